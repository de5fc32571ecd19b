//! Prints the `Storefront` CRD: `cargo run -p storefront-operator --bin crdgen > crds/storefront.yaml`.

fn main() {
    print!("{}", storefront_operator::crd_yaml());
}
