//! Re-embed migrations when one is added (sqlx's `migrate!` does not track new files on its own).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
