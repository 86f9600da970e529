//! The knowledge base's ingestion worker on AWS Lambda: reads the documents of the SQS
//! messages it is given.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_fn_knowledge::worker::run().await
}
