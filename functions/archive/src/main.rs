//! The archive function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_with(async |state| jarvis_fn_archive::lambda_routes(state)).await
}
