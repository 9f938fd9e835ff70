//! `genesys-router`: the command-line front end (placeholder until its issue lands).

fn main() {
    println!(
        "genesys-router {}: commands arrive with the router issue",
        env!("CARGO_PKG_VERSION")
    );
}
