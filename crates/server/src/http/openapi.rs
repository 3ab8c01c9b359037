//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`.
//!
//! The document is maintained by hand next to this file (`openapi.json`) and
//! compiled in. Tests hold it against the code: every route the API router
//! serves (path and method) is in it and nothing else is, every `$ref`
//! resolves, and the objects the API answers with have exactly the
//! properties their schemas list.

use axum::http::header;
use axum::response::IntoResponse;

/// The document's text.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;
    use crate::http::test_client::{Client, spawn};

    pub(crate) fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// Follows a local `$ref` (`#/components/schemas/Stream`).
    pub(crate) fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = doc
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{pointer} does not resolve"));
                resolve(doc, target)
            }
            None => value,
        }
    }

    /// Checks that `value` has exactly the properties `schema` lists, all of
    /// them required, recursively through objects, arrays and nullable `oneOf`s.
    pub(crate) fn check_shape(doc: &Value, schema: &Value, value: &Value, at: &str) {
        let schema = resolve(doc, schema);
        if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
            if value.is_null() {
                assert!(
                    choices.iter().any(|c| c["type"] == "null"),
                    "{at}: null is not allowed"
                );
                return;
            }
            let object = choices
                .iter()
                .find(|c| c["type"] != "null")
                .expect("a non-null choice");
            return check_shape(doc, object, value, at);
        }
        match value {
            Value::Object(fields) => {
                let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                    return;
                };
                let listed: BTreeSet<_> = properties.keys().map(String::as_str).collect();
                let present: BTreeSet<_> = fields.keys().map(String::as_str).collect();
                assert_eq!(present, listed, "{at}: the properties the schema lists");
                let required: BTreeSet<_> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                assert_eq!(required, listed, "{at}: every property is required");
                for (name, field) in fields {
                    check_shape(doc, &properties[name], field, &format!("{at}.{name}"));
                }
            }
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        check_shape(doc, item, v, &format!("{at}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn every_ref(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => every_ref(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| every_ref(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_ref_resolves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/api/v1");
        let mut refs = Vec::new();
        every_ref(&doc, &mut refs);
        assert!(refs.len() > 10, "{refs:?}");
        for r in refs {
            assert!(r.starts_with("#/"), "{r}: local references only");
            assert!(doc.pointer(&r[1..]).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_operation_documents_the_guard_and_its_security_schemes() {
        let doc = document();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["basic"]["scheme"], "basic");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        let security = doc["security"].as_array().expect("security");
        for name in ["basic", "bearer"] {
            assert!(security.iter().any(|s| s.get(name).is_some()), "{name}");
        }
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                for status in ["401", "403", "429", "503"] {
                    let response = resolve(&doc, &op["responses"][status]);
                    assert!(
                        response.get("description").is_some(),
                        "{method} {path} does not document {status}"
                    );
                }
            }
        }
        let unauthorized = resolve(&doc, &doc["components"]["responses"]["Unauthorized"]);
        assert!(unauthorized["headers"].get("WWW-Authenticate").is_some());
    }

    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

    /// A concrete request path for a templated one.
    fn concrete(path: &str) -> String {
        path.replace("{app}", "live")
            .replace("{stream}", "nobody")
            .replace("{id}", "999999")
    }

    #[tokio::test]
    async fn every_route_the_router_serves_is_documented_and_nothing_else() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .map(|m| (path.clone(), m.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
            })
            .collect();

        let engine = tidewater::Engine::builder()
            .app("live", tidewater::AppSpec::default())
            .build()
            .expect("engine");
        let server = spawn(crate::http::router(engine)).await;
        let client = Client(server.addr);
        let mut served = BTreeSet::new();
        for (path, _) in crate::http::api::routes() {
            let url = format!("/api/v1{}", concrete(path));
            for method in METHODS {
                let (status, body) = client.request(method, &url).await;
                match status {
                    405 => {
                        let error: Value = serde_json::from_str(&body).expect("JSON");
                        assert_eq!(error["error"]["code"], "method_not_allowed", "{body}");
                    }
                    _ => {
                        assert!(
                            !body.contains("no API route"),
                            "{method} {url} reached the fallback"
                        );
                        served.insert((path.to_string(), method.to_string()));
                    }
                }
            }
        }
        assert_eq!(served, documented);
        // A path the document does not have is not served.
        let (status, body) = client.request("GET", "/api/v1/sessions/1/more").await;
        assert_eq!(status, 404, "{body}");
        server.stop().await;
    }
}
