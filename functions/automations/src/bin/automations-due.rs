//! The automations' firer on AWS Lambda: EventBridge Scheduler invokes it every minute.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_fn_automations::due::run().await
}
