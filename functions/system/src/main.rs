//! The system function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_with(jarvis_fn_system::lambda_routes).await
}
