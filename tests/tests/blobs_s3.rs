//! The S3 blob store against a real S3 API (moto server, started by the test command):
//! the conformance behaviour every blob store has, and blobs kept across clients.

use jarvis_blobs::{Blob, BlobKey, Blobs, s3::S3};
use jarvis_config::AwsTarget;

const ENDPOINT_VAR: &str = "JARVIS_TEST_S3_ENDPOINT";

fn bucket() -> S3 {
    let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("{ENDPOINT_VAR} is not set: run ./infra/test.sh, which starts a moto server")
    });
    S3::new(
        format!(
            "jarvis-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
        AwsTarget {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            env_credentials: false,
        },
    )
}

#[tokio::test]
async fn an_s3_bucket_keeps_puts_reads_and_deletes_blobs() {
    jarvis_blobs::conformance(&bucket()).await;
}

#[tokio::test]
async fn a_blob_keeps_its_media_type_and_every_byte() {
    let blobs = bucket();
    let key = BlobKey::parse("attachments/u/c/photo.webp").expect("key");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let blob = Blob {
        media_type: "image/webp".into(),
        bytes,
    };
    blobs.put(&key, &blob).await.expect("put");
    assert_eq!(blobs.get(&key).await.expect("get"), Some(blob));
}
