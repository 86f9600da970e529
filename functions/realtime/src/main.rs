//! The realtime function on AWS Lambda, behind the WebSocket API: every route's event,
//! answered through the management API of the stage it came from.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_fn_realtime::lambda::run().await
}
