//! The agents' worker on AWS Lambda: drives the runs of the SQS messages it is given.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_fn_agents::worker::run().await
}
