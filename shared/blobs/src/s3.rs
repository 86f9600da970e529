//! An S3 bucket as the blob store: `PutObject` with the media type as `Content-Type`,
//! `GetObject`, `DeleteObject`. The client is built on first use, so a cold start makes no
//! network call; against a local stand-in (an endpoint override) it uses path-style
//! addresses and creates the bucket when missing.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use jarvis_config::AwsTarget;

use crate::{Blob, BlobError, BlobKey, Blobs};

/// A bucket.
#[derive(Debug)]
pub struct S3 {
    bucket: String,
    aws: AwsTarget,
    client: tokio::sync::OnceCell<aws_sdk_s3::Client>,
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    err: aws_sdk_s3::error::SdkError<E>,
) -> BlobError {
    BlobError::Unavailable(DisplayErrorContext(err).to_string().into())
}

impl S3 {
    /// The bucket `bucket` where `aws` says S3 is.
    pub fn new(bucket: String, aws: AwsTarget) -> Self {
        Self {
            bucket,
            aws,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&aws_sdk_s3::Client, BlobError> {
        self.client
            .get_or_try_init(|| async {
                let timeout = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build();
                let sdk =
                    jarvis_config::aws::sdk_config(&self.aws, RetryConfig::standard(), timeout)
                        .await;
                let local = self.aws.endpoint.is_some();
                let config = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(local)
                    .build();
                let client = aws_sdk_s3::Client::from_conf(config);
                if local {
                    let exists = client.head_bucket().bucket(&self.bucket).send().await;
                    if exists.is_err() {
                        client
                            .create_bucket()
                            .bucket(&self.bucket)
                            .send()
                            .await
                            .map_err(unavailable)?;
                    }
                }
                Ok(client)
            })
            .await
    }
}

#[async_trait]
impl Blobs for S3 {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &BlobKey, blob: &Blob) -> Result<(), BlobError> {
        self.client()
            .await?
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(&blob.media_type)
            .body(ByteStream::from(blob.bytes.clone()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Blob>, BlobError> {
        let answer = self
            .client()
            .await?
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await;
        let object = match answer {
            Ok(object) => object,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(unavailable(err)),
        };
        let media_type = object
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Unavailable(Box::new(e)))?
            .into_bytes()
            .to_vec();
        Ok(Some(Blob { media_type, bytes }))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.client()
            .await?
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
