//! The agents function on AWS Lambda, behind the HTTP API.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_with(jarvis_fn_agents::lambda_routes).await
}
