//! The chat function on AWS Lambda in response-streaming mode, behind a function URL:
//! Server-Sent Events reach the client as they are generated.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_streaming_with(jarvis_fn_chat::lambda_routes).await
}
