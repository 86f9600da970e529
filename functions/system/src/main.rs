//! The system function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve(jarvis_fn_system::routes()).await
}
