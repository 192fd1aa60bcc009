//! `terraform-provider-hangar`: started by Terraform (plugin protocol 6), or by hand as
//! `terraform-provider-hangar docs DIR` to write the reference documentation.

use std::path::Path;

use terraform_provider_hangar::{docs, HangarProvider, NAME};

const USAGE: &str = "terraform-provider-hangar: the Terraform provider hangar/hangar.\n\
Terraform starts it; it is not meant to be run by hand. Install it as a provider (see the\n\
provider's documentation), or:\n  terraform-provider-hangar docs DIR   write the reference documentation into DIR\n  terraform-provider-hangar --version";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["docs", dir] => write_docs(Path::new(dir)),
        ["--version"] | ["version"] => {
            println!("terraform-provider-hangar {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // Terraform sets its plugin cookie; without it this is someone running the binary.
        [] if std::env::var_os("TF_PLUGIN_MAGIC_COOKIE").is_some() => serve(),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn serve() -> anyhow::Result<()> {
    // The plugin library appends a captured backtrace to every diagnostic when backtraces are
    // on (RUST_BACKTRACE in the user's shell): users get the message only.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    // The build links both of rustls' crypto providers (through its dependencies), so the
    // plugin's TLS server needs one chosen for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(tf_provider::serve(NAME, HangarProvider::new()))
}

fn write_docs(dir: &Path) -> anyhow::Result<()> {
    for (path, text) in docs::pages() {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text)?;
    }
    Ok(())
}
