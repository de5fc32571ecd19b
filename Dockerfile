# syntax=docker/dockerfile:1.7
# Every Storefront binary from one build; pick the image with --build-arg BINARY=…:
#   auth products cart orders payments notifications web storefront-operator
# The dependency layer (cargo-chef "cook") is rebuilt only when Cargo.toml/Cargo.lock change.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
      -p storefront-auth -p storefront-products -p storefront-cart -p storefront-orders \
      -p storefront-payments -p storefront-notifications -p storefront-web -p storefront-operator \
      --bin auth --bin products --bin cart --bin orders --bin payments --bin notifications \
      --bin web --bin storefront-operator \
 && mkdir /out \
 && cp target/release/auth target/release/products target/release/cart target/release/orders \
       target/release/payments target/release/notifications target/release/web \
       target/release/storefront-operator /out/

# glibc, libgcc, the CA bundle and the nonroot user (65532) — what the binaries need — from
# distroless (which also carries libssl, libstdc++ and zlib, unused here). `cargo xtask images`
# builds the same runtime without Docker from this machine's libraries (xtask/src/images.rs, whose
# test checks that the lines below still say the same).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG BINARY
COPY --from=builder /out/${BINARY} /usr/local/bin/app
# The pods run as this user with a read-only root file system (the operator's Deployments).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/app"]
