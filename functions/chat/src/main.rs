//! The chat function on AWS Lambda, behind the HTTP API (replies as JSON; a streamed reply
//! arrives whole).

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_with(jarvis_fn_chat::lambda_routes).await
}
