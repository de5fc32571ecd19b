//! Each service's OpenAPI 3.1 document: its operations, listed next to its router, with the
//! schemas of their bodies generated from the Rust types that read and write them.
//!
//! The schemas come from `schemars`, the generator the event schemas in `docs/events/` already
//! use: JSON Schema 2020-12 is OpenAPI 3.1's own schema dialect, so a type's schema goes into
//! `components/schemas` as it is, and one derive serves events and HTTP alike. A service builds
//! its document once ([`Api::document`]), serves it at `/api/{prefix}/openapi.json` ([`response`]),
//! and `xtask/tests/openapi.rs` merges all of them into `docs/api/openapi.json` and fails when
//! that file is stale. `cargo xtask test` fuzzes the merged document through the gateway.
//!
//! What an operation can answer is stated, not guessed: every problem status it can return is
//! listed (the fuzz run fails on an undocumented one), and the ones every operation of a kind
//! shares come with the kind ([`Operation::json`] brings 400, 413, 415 and 422;
//! [`Operation::customer`] 401; [`Operation::admin`] 401 and 403).

use std::{
    collections::BTreeSet,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::error::Problem;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A service's document while its operations are added.
pub struct Api {
    title: String,
    description: String,
    generator: SchemaGenerator,
    paths: Map<String, Value>,
    ids: BTreeSet<String>,
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A signed-in user: `Authorization: Bearer` or the `sf_access` cookie.
    Customer,
    /// A signed-in administrator.
    Admin,
}

impl Api {
    pub fn new(title: &str, description: &str) -> Api {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
        });
        let mut api = Api {
            title: title.to_owned(),
            description: description.to_owned(),
            generator: settings.into_generator(),
            paths: Map::new(),
            ids: BTreeSet::new(),
        };
        api.generator.subschema_for::<Problem>();
        api
    }

    /// Adds the operation `method path` (`id` is its `operationId`, unique in the whole shop).
    pub fn operation(
        &mut self,
        method: &str,
        path: &str,
        id: &str,
        summary: &str,
        build: impl FnOnce(&mut Operation<'_>),
    ) -> &mut Api {
        assert!(self.ids.insert(id.to_owned()), "operationId {id} twice");
        let mut operation = Operation {
            generator: &mut self.generator,
            value: Map::new(),
            responses: Map::new(),
            parameters: Vec::new(),
        };
        operation.value.insert("operationId".into(), id.into());
        operation.value.insert("summary".into(), summary.into());
        let tag = path
            .trim_start_matches("/api/")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        operation.value.insert("tags".into(), json!([tag]));
        build(&mut operation);
        operation.problem(
            503,
            "Something this needs (its database, the broker, another service) is down; retry.",
        );
        let Operation {
            mut value,
            responses,
            parameters,
            ..
        } = operation;
        if !parameters.is_empty() {
            value.insert("parameters".into(), Value::Array(parameters));
        }
        let mut responses: Vec<(String, Value)> = responses.into_iter().collect();
        responses.sort_by(|a, b| a.0.cmp(&b.0));
        value.insert(
            "responses".into(),
            Value::Object(responses.into_iter().collect()),
        );
        let item = self
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| json!({}));
        let previous = item
            .as_object_mut()
            .expect("a path item is an object")
            .insert(method.to_lowercase(), Value::Object(value));
        assert!(previous.is_none(), "{method} {path} twice");
        self
    }

    /// The OpenAPI 3.1 document.
    pub fn document(self) -> Value {
        let schemas: Map<String, Value> = self
            .generator
            .definitions()
            .iter()
            .map(|(name, schema)| (name.clone(), schema.clone()))
            .collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": self.title,
                "version": env!("CARGO_PKG_VERSION"),
                "description": self.description,
                "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
            },
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "An access token from `POST /api/users/signin` or `/api/users/refresh`.",
                    },
                    "cookie": {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": "sf_access",
                        "description": "The same token as the `sf_access` cookie sign-in sets. A write signed by the cookie needs this site's `Origin` (or `Sec-Fetch-Site: same-origin`), else 403 `cross-origin`.",
                    },
                },
            },
        })
    }
}

/// One operation while it is described.
pub struct Operation<'a> {
    generator: &'a mut SchemaGenerator,
    value: Map<String, Value>,
    responses: Map<String, Value>,
    parameters: Vec<Value>,
}

impl Operation<'_> {
    /// A longer description (CommonMark).
    pub fn describe(&mut self, text: &str) -> &mut Self {
        self.value.insert("description".into(), text.into());
        self
    }

    /// Who may call it; a signed-in caller may be refused (401), and only an admin passes
    /// [`Access::Admin`] (403).
    pub fn access(&mut self, access: Access) -> &mut Self {
        match access {
            Access::Public => {
                self.value.insert("security".into(), json!([]));
            }
            Access::Customer | Access::Admin => {
                self.value.insert(
                    "security".into(),
                    json!([{ "bearer": [] }, { "cookie": [] }]),
                );
                self.problem(
                    401,
                    "No valid access token (`unauthenticated`, `invalid-token`, `token-expired`, `token-revoked`).",
                );
                self.problem(
                    403,
                    "A cookie-signed write from another origin (`cross-origin`).",
                );
                if access == Access::Admin {
                    self.problem(403, "Not an administrator (`admin-only`).");
                }
            }
        }
        self
    }

    /// [`Access::Customer`].
    pub fn customer(&mut self) -> &mut Self {
        self.access(Access::Customer)
    }

    /// [`Access::Admin`].
    pub fn admin(&mut self) -> &mut Self {
        self.access(Access::Admin)
    }

    /// A path parameter, text.
    pub fn path(&mut self, name: &str, description: &str) -> &mut Self {
        self.parameters.push(json!({
            "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" },
        }));
        self
    }

    /// A path parameter that is an id (a UUID). A handler that reads it as text and parses it
    /// answers 404 for anything else (add it); one that reads `Path<Uuid>` answers 400.
    pub fn id(&mut self, name: &str, description: &str) -> &mut Self {
        self.parameters.push(json!({
            "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string", "format": "uuid" },
        }));
        self
    }

    /// A query parameter with its own `schema` (when the handler does not read a typed query).
    pub fn query_param(
        &mut self,
        name: &str,
        required: bool,
        description: &str,
        schema: Value,
    ) -> &mut Self {
        self.parameters.push(json!({
            "name": name, "in": "query", "required": required, "description": description,
            "schema": schema,
        }));
        self
    }

    /// A request header.
    pub fn header(&mut self, name: &str, required: bool, description: &str) -> &mut Self {
        self.parameters.push(json!({
            "name": name, "in": "header", "required": required, "description": description,
            "schema": { "type": "string" },
        }));
        self
    }

    /// The query parameters: the properties of `T` (the type the handler reads the query into).
    pub fn query<T: JsonSchema>(&mut self) -> &mut Self {
        let schema = self.generator.root_schema_for::<T>();
        let schema = schema.as_value();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let mut property = property.clone();
                let description = property
                    .as_object_mut()
                    .and_then(|p| p.remove("description"))
                    .unwrap_or_else(|| "".into());
                // A query value is never null (it is absent or text): an `Option`'s null type
                // and its `default: null` say nothing a URL can carry.
                if let Some(p) = property.as_object_mut() {
                    if p.get("default") == Some(&Value::Null) {
                        p.remove("default");
                    }
                    if let Some(Value::Array(types)) = p.get_mut("type") {
                        types.retain(|t| t != "null");
                        if types.len() == 1 {
                            let only = types[0].clone();
                            p.insert("type".into(), only);
                        }
                    }
                }
                self.parameters.push(json!({
                    "name": name, "in": "query", "required": required.contains(name.as_str()),
                    "description": description, "schema": property,
                }));
            }
        }
        self.problem(
            400,
            "A query parameter is not of its type, is repeated, or is unknown.",
        );
        self.problem(422, "A query parameter is invalid; `errors` names it.");
        self
    }

    /// A JSON request body of type `T`. Brings 400 (not JSON, or unknown fields), 413, 415
    /// (not `application/json`) and 422 (invalid fields, by name in `errors`).
    pub fn json<T: JsonSchema>(&mut self) -> &mut Self {
        let schema = self.generator.subschema_for::<T>();
        self.value.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            }),
        );
        self.problem(
            400,
            "The body is not JSON of this shape (`malformed-request`).",
        );
        self.problem(413, "The body is larger than this endpoint takes.");
        self.problem(415, "The body is not `application/json` (UTF-8).");
        self.problem(
            422,
            "Invalid fields, each named in `errors` (`validation`).",
        );
        self
    }

    /// A request body of `media_type` with `schema` (uploads).
    pub fn body(&mut self, media_type: &str, schema: Value) -> &mut Self {
        self.value.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { media_type: { "schema": schema } } }),
        );
        self
    }

    /// A success answer with a JSON body of type `T`.
    pub fn ok<T: JsonSchema>(&mut self, status: u16, description: &str) -> &mut Self {
        let schema = self.generator.subschema_for::<T>();
        self.answer(
            status,
            description,
            Some(("application/json", schema.to_value())),
        )
    }

    /// An answer without a body (204, 304).
    pub fn empty(&mut self, status: u16, description: &str) -> &mut Self {
        self.answer(status, description, None)
    }

    /// An answer with a body of `media_type` described by `schema`.
    pub fn answer(
        &mut self,
        status: u16,
        description: &str,
        body: Option<(&str, Value)>,
    ) -> &mut Self {
        let mut response = json!({ "description": description });
        if let Some((media_type, schema)) = body {
            response["content"] = json!({ media_type: { "schema": schema } });
        }
        self.responses.insert(status.to_string(), response);
        self
    }

    /// A problem+json answer; a second description of the same status is added to the first.
    pub fn problem(&mut self, status: u16, description: &str) -> &mut Self {
        let key = status.to_string();
        if let Some(existing) = self.responses.get_mut(&key) {
            let text = existing["description"].as_str().unwrap_or_default();
            if !text.contains(description) {
                existing["description"] = format!("{text} {description}").into();
            }
            return self;
        }
        let schema = self.generator.subschema_for::<Problem>();
        self.answer(status, description, Some((PROBLEM_JSON, schema.to_value())))
    }
}

/// The route of a service's OpenAPI document, `GET {path}` (`/api/{prefix}/openapi.json`):
/// `document` builds it on the first request, and every request after is answered from that.
pub fn route<S: Clone + Send + Sync + 'static>(path: &str, document: fn() -> Value) -> Router<S> {
    let built = Arc::new(OnceLock::new());
    Router::new().route(
        path,
        get(move || {
            let built = built.clone();
            async move { response(built.get_or_init(document)) }
        }),
    )
}

/// `document` as the answer of `GET /api/{prefix}/openapi.json`.
pub fn response(document: &Value) -> Response {
    let body = serde_json::to_vec(document).unwrap_or_default();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What is wrong with `document`, if anything: every `$ref` resolves, every `{param}` of a path
/// is declared, every operation answers at least one success. Each service's unit test asserts
/// this is empty.
pub fn lint(document: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let schemas = &document["components"]["schemas"];
    let mut refs = Vec::new();
    collect_refs(document, &mut refs);
    for reference in refs {
        let name = reference.trim_start_matches("#/components/schemas/");
        if !reference.starts_with("#/components/schemas/") || schemas.get(name).is_none() {
            wrong.push(format!("{reference} does not resolve"));
        }
    }
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in item.as_object().into_iter().flatten() {
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if declared != templated {
                wrong.push(format!(
                    "{method} {path}: path parameters {declared:?}, the path has {templated:?}"
                ));
            }
            let responses = operation["responses"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if !responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3'))
            {
                wrong.push(format!("{method} {path}: no success answer"));
            }
        }
    }
    wrong
}

/// A service's unit test: its document has no [`lint`] findings and `operations` operations.
pub fn assert_whole(document: &Value, operations: usize) {
    assert_eq!(lint(document), Vec::<String>::new());
    let counted: usize = document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(|item| item.as_object().map(|methods| methods.len()))
        .sum();
    assert_eq!(counted, operations, "operations in the document");
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(reference)) => refs.push(reference.clone()),
                    _ => collect_refs(item, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, refs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Body {
        /// How many.
        quantity: i64,
    }

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Paging {
        /// The page, from 1.
        page: Option<String>,
    }

    #[test]
    fn operations_carry_their_schemas_and_every_problem_they_answer() {
        let mut api = Api::new("Test", "A test.");
        api.operation("POST", "/api/things/{id}", "changeThing", "Change", |op| {
            op.customer()
                .id("id", "The thing")
                .json::<Body>()
                .ok::<Body>(200, "Changed")
                .problem(404, "No such thing.");
        })
        .operation("GET", "/api/things", "listThings", "List", |op| {
            op.access(Access::Public)
                .query::<Paging>()
                .ok::<Vec<Body>>(200, "The page");
        });
        let doc = api.document();
        assert_eq!(doc["openapi"], "3.1.0");
        let change = &doc["paths"]["/api/things/{id}"]["post"];
        assert_eq!(change["operationId"], "changeThing");
        let statuses: Vec<&String> = change["responses"].as_object().unwrap().keys().collect();
        assert_eq!(
            statuses,
            [
                "200", "400", "401", "403", "404", "413", "415", "422", "503"
            ]
        );
        assert_eq!(
            change["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Body"
        );
        assert_eq!(
            change["responses"]["404"]["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(doc["components"]["schemas"]["Problem"]["properties"]["type"].is_object());
        let list = &doc["paths"]["/api/things"]["get"];
        assert_eq!(list["security"], json!([]));
        assert_eq!(list["parameters"][0]["name"], "page");
        assert_eq!(list["parameters"][0]["in"], "query");
        assert_eq!(list["parameters"][0]["required"], false);
        assert_eq!(list["parameters"][0]["description"], "The page, from 1.");
        assert_eq!(lint(&doc), Vec::<String>::new());
    }

    #[test]
    fn lint_finds_undeclared_path_parameters_and_dangling_references() {
        let mut api = Api::new("Test", "A test.");
        api.operation("GET", "/api/things/{id}", "showThing", "Show", |op| {
            op.answer(
                200,
                "The thing",
                Some((
                    "application/json",
                    json!({ "$ref": "#/components/schemas/Nowhere" }),
                )),
            );
        })
        .operation("DELETE", "/api/things", "deleteThings", "Delete", |op| {
            op.problem(404, "None.");
        });
        let wrong = lint(&api.document());
        assert_eq!(
            wrong,
            [
                "#/components/schemas/Nowhere does not resolve",
                "get /api/things/{id}: path parameters {}, the path has {\"id\"}",
                "delete /api/things: no success answer",
            ]
        );
    }

    #[test]
    #[should_panic(expected = "operationId same twice")]
    fn an_operation_id_is_used_once() {
        let mut api = Api::new("Test", "A test.");
        api.operation("GET", "/a", "same", "A", |_| {})
            .operation("GET", "/b", "same", "B", |_| {});
    }
}
