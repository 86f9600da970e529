//! The auth function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_shared::lambda::Error> {
    jarvis_shared::lambda::serve(jarvis_auth::routes()).await
}
