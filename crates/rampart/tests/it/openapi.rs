//! The OpenAPI document at `/api/v1/openapi.json` and the live router agree: every operation the
//! document names exists on the server (an authenticated one answers 401 without credentials; a
//! public one answers something other than "no such route").

use serde_json::Value;

use crate::support::Server;

const SAMPLE_ID: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_exists_and_is_guarded_as_documented() {
    let server = Server::start();
    let client = server.client();
    let doc: Value =
        client.get(server.url("/api/v1/openapi.json")).send().await.expect("get").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 25, "the document covers the API");
    let mut checked = 0;
    for (path, operations) in paths {
        let concrete = path.replace("{id}", SAMPLE_ID).replace("{user_id}", SAMPLE_ID);
        for (method, operation) in operations.as_object().expect("operations") {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut request = client.request(method.clone(), server.url(&concrete));
            if operation.get("requestBody").is_some() {
                request = request.header("content-type", "application/json").body("{}");
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured && path != "/api/v1/events" {
                assert_eq!(status, 401, "{method} {path} must demand authentication: {body}");
            } else {
                assert!(
                    status != 405 && !(status == 404 && body["error"]["message"] == "Not found."),
                    "{method} {path} does not exist: {status} {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} operations checked");
}
