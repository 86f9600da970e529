//! The trading function on AWS Lambda, behind the HTTP API.

#[tokio::main]
async fn main() -> Result<(), jarvis_app::lambda::Error> {
    jarvis_app::lambda::serve_with(async |state: &mut jarvis_app::AppState| {
        jarvis_fn_trading::routes(jarvis_fn_trading::service(state))
    })
    .await
}
