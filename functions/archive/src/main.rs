//! The archive function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_shared::lambda::Error> {
    jarvis_shared::lambda::serve(jarvis_archive::routes()).await
}
