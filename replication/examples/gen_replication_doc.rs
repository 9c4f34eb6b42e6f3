//! Regenerates `docs/REPLICATION.md` from the state table in the code.
//! Run from anywhere: `cargo run -p ironlun-replication --example gen_replication_doc`.

fn main() -> std::io::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/REPLICATION.md");
    std::fs::write(&path, ironlun_replication::table::render_markdown())?;
    println!("wrote {}", path.display());
    Ok(())
}
