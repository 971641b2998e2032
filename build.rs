// sqlx's `migrate!` embeds the files of migrations/ at compile time but does not tell Cargo to
// watch that folder: without this, a new migration file is left out of the binary until some
// Rust source changes too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
