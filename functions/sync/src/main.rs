//! The sync function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve(jarvis_fn_sync::routes()).await
}
