//! The system jobs function on AWS Lambda, invoked by EventBridge Scheduler with
//! `{"job": "<name>"}`.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_fn_jobs::lambda::run().await
}
