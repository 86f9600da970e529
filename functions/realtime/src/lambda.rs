//! The Lambda host of [`Realtime`]: the state and chat service built as the chat function
//! builds them, and a management API client per stage endpoint the events come from.

use std::collections::HashMap;
use std::sync::Arc;

use jarvis_app::lambda::{Error, run_events, start};
use jarvis_realtime::Connections;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{Realtime, event_of};

/// Serves the WebSocket API's events until the sandbox is shut down.
pub async fn run() -> Result<(), Error> {
    let (mut state, collector) = start().await?;
    let ai = jarvis_fn_ai::lambda_service(&mut state).await;
    let chat = jarvis_fn_chat::service(&state, ai);
    let aws = state.config.realtime.aws.clone();
    let realtime = Arc::new(Realtime::new(state, chat));
    let clients: Arc<Mutex<HashMap<String, Arc<dyn Connections>>>> = Arc::default();
    run_events(collector, move |event: LambdaEvent<Value>| {
        let (realtime, clients, aws) = (Arc::clone(&realtime), Arc::clone(&clients), aws.clone());
        async move {
            let request = event_of(event.payload)?;
            let context = &request.request_context;
            let endpoint = format!(
                "https://{}/{}",
                context.domain_name.as_deref().unwrap_or_default(),
                context.stage.as_deref().unwrap_or_default()
            );
            let connections = {
                let mut clients = clients.lock().await;
                match clients.get(&endpoint) {
                    Some(client) => Arc::clone(client),
                    None => {
                        let target = jarvis_config::AwsTarget {
                            endpoint: Some(endpoint.clone()),
                            ..aws
                        };
                        let client: Arc<dyn Connections> =
                            Arc::new(jarvis_realtime::apigateway::ApiGateway::new(&target).await);
                        clients.insert(endpoint, Arc::clone(&client));
                        client
                    }
                }
            };
            let response = realtime.handle(request, connections).await;
            // The work a reply leaves behind (titles, memories) finishes before the sandbox
            // is frozen.
            realtime.chat().settled().await;
            Ok::<_, Error>(response)
        }
    })
    .await
}
