//! The nginx gateway that mirrors the Ingress on one port: its routes, body limits and its own
//! errors as problem+json.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Result, bail};

use super::{Ports, SERVICES};
use crate::{
    install::{Tools, run},
    procs,
    stack::Stack,
};

/// The largest request body of a JSON or form route: the services' `MAX_BODY_BYTES` default
/// (services/kit/src/config.rs).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The routes that take image uploads (products' API and the admin page's form through web), with
/// the body they read before their own rules answer (`MAX_UPLOAD_BYTES`,
/// services/kit/src/config.rs). The gateway refuses anything larger itself, so a service never
/// closes a connection nginx is still sending on (which nginx would answer with a 502).
const UPLOAD_ROUTES: [(&str, &str, usize); 2] = [
    ("^/api/products/[^/]+/images$", "products", 10 * 1024 * 1024),
    ("^/admin/products/[^/]+/images$", "web", 10 * 1024 * 1024),
];

/// The errors nginx answers itself (a request it cannot parse, a body over the route's limit, a
/// service that is down), as problem+json like every service's (docs/api/errors.md).
const GATEWAY_ERRORS: [(u16, &str, &str, &str); 12] = [
    (
        400,
        "malformed-request",
        "Bad Request",
        "the gateway could not read this request (a malformed request line or headers, or headers too large)",
    ),
    (
        405,
        "method-not-allowed",
        "Method Not Allowed",
        "the gateway does not take this method (such as TRACE)",
    ),
    (
        408,
        "request-timeout",
        "Request Timeout",
        "the request was not received in time",
    ),
    (
        411,
        "length-required",
        "Length Required",
        "this request needs a Content-Length",
    ),
    (
        413,
        "payload-too-large",
        "Payload Too Large",
        "the request body is larger than this route accepts",
    ),
    (
        414,
        "uri-too-long",
        "URI Too Long",
        "the request URL is too long",
    ),
    (
        500,
        "internal",
        "Internal Server Error",
        "the gateway failed",
    ),
    (
        501,
        "not-implemented",
        "Not Implemented",
        "the gateway does not support this request (such as its Transfer-Encoding)",
    ),
    (
        502,
        "unavailable",
        "Bad Gateway",
        "the service behind this route did not answer; try again shortly",
    ),
    (
        503,
        "unavailable",
        "Service Unavailable",
        "the service behind this route is unavailable; try again shortly",
    ),
    (
        504,
        "unavailable",
        "Gateway Timeout",
        "the service behind this route did not answer in time; try again shortly",
    ),
    (
        505,
        "http-version-not-supported",
        "HTTP Version Not Supported",
        "send HTTP/1.1 (or HTTP/1.0) to the gateway",
    ),
];

/// The directives that pass a request on to `service`. The gateway is the edge: the client's
/// address and host it sets replace whatever the client claimed (services trust only `X-Real-IP`
/// for the address; `X-Forwarded-Host` is what the Origin checks compare with).
fn proxy_to(service: &str, upgrade: bool) -> String {
    let connection = if upgrade {
        "            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 1h;\n"
    } else {
        "            proxy_set_header Connection \"\";\n"
    };
    format!(
        "            proxy_pass http://{service};\n            proxy_http_version 1.1;\n{connection}            proxy_set_header Host $http_host;\n            proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-Forwarded-For $remote_addr;\n            proxy_set_header X-Forwarded-Host $http_host;\n            proxy_set_header X-Forwarded-Proto $scheme;\n"
    )
}

/// The nginx configuration: the Ingress routes on the gateway port, WebSocket upgrades on `/ws/`,
/// each route's body limit, and nginx's own errors as problem+json.
fn gateway_config(dir: &Path, ports: &Ports) -> String {
    let port = ports.gateway;
    let mut upstreams = String::new();
    let mut locations = String::new();
    for (pattern, name, bytes) in UPLOAD_ROUTES {
        let service = SERVICES.iter().find(|s| s.name == name).expect("a service");
        if service.exists() {
            locations.push_str(&format!(
                "        location ~ {pattern} {{\n            client_max_body_size {bytes};\n{}        }}\n",
                proxy_to(name, false)
            ));
        }
    }
    for service in &SERVICES {
        for route in service.routes {
            let body = if service.exists() {
                proxy_to(service.name, route.starts_with("/ws/"))
            } else {
                format!(
                    "            default_type application/problem+json;\n            return 503 '{{\"type\":\"https://storefront.dev/problems/service-not-built\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"the {} service is not part of this build yet\"}}';\n",
                    service.name
                )
            };
            locations.push_str(&format!("        location {route} {{\n{body}        }}\n"));
        }
        if service.exists() {
            upstreams.push_str(&format!(
                "    upstream {} {{\n        server 127.0.0.1:{};\n        keepalive 64;\n    }}\n",
                service.name,
                ports.of(service)
            ));
        }
    }
    let mut errors = String::new();
    for (status, kind, title, detail) in GATEWAY_ERRORS {
        // 494 is nginx's own code for headers too large; it answers it as a 400. The error pages
        // are internal locations by path: a named location fails (500) for a request line nginx
        // could not parse. They have no body limit: an upload's 502 would otherwise meet the
        // default 64 KiB there and become nginx's own HTML 413.
        let codes = if status == 400 {
            "400 494".to_owned()
        } else {
            status.to_string()
        };
        errors.push_str(&format!(
            "        error_page {codes} /_gateway/errors/{status};\n        location = /_gateway/errors/{status} {{\n            internal;\n            client_max_body_size 0;\n            default_type application/problem+json;\n            return {status} '{{\"type\":\"https://storefront.dev/problems/{kind}\",\"title\":\"{title}\",\"status\":{status},\"detail\":\"{detail}\"}}';\n        }}\n"
        ));
    }
    let d = dir.display();
    format!(
        "# Generated by `cargo xtask up`: the Ingress routes of docs/architecture.md on one port.
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size {MAX_BODY_BYTES};
{upstreams}    server {{
        listen 127.0.0.1:{port};
{errors}{locations}    }}
}}
"
    )
}

/// Starts nginx with the generated configuration, after checking it.
pub(super) fn start_gateway(stack: &mut Stack, tools: &Tools, ports: &Ports) -> Result<()> {
    let port = ports.gateway;
    let dir = stack.dir.join("gateway");
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let config = dir.join("nginx.conf");
    std::fs::write(&config, gateway_config(&dir, ports))?;
    run(
        Command::new(&tools.nginx)
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config),
        "nginx -t (check the gateway configuration)",
    )?;
    if procs::port_in_use(port) {
        bail!("port {port} for the gateway is taken by another program");
    }
    let proc = procs::spawn(
        "gateway",
        Command::new(&tools.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off;"]),
        &stack.logs(),
    )?;
    stack.started(proc, port, Duration::from_secs(10), "gateway (nginx)")
}
