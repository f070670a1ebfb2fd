//! Pulls every platform of an image into a blob store: `pull REF STORE_DIR`.
//! A measuring tool for the registry client alone (no build around it).

use rbuild_core::Reference;
use rbuild_registry::{Config, Registry};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(reference), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pull REF STORE_DIR");
        return ExitCode::FAILURE;
    };
    let result = (|| -> Result<String, Box<dyn std::error::Error>> {
        let r: Reference = reference.parse()?;
        let store = rbuild_store::Store::open(std::path::Path::new(dir))?;
        let root = Registry::new(Config::load()?).pull_all(&store, &r)?;
        Ok(root.digest.to_string())
    })();
    match result {
        Ok(d) => {
            println!("{d}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
