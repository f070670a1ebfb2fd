//! Parsing, lowering and linting do work linear in the Dockerfile's size: a file with
//! many ENV lines must not cost quadratic memory traffic. Work is counted as bytes
//! allocated by the thread doing it, so the bound holds on any machine at any speed.

use rbuild_core::Platform;
use rbuild_core::config::ImageConfig;
use rbuild_graph::{BaseResolver, LowerOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the bytes each thread asks for.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|c| c.set(c.get() + bytes as u64));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same layout as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same layout as given.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the pointer and layout come from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer and layout come from this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes allocated by this thread while `f` runs.
fn allocated_by(f: impl FnOnce()) -> u64 {
    let before = ALLOCATED.with(Cell::get);
    f();
    ALLOCATED.with(Cell::get) - before
}

/// No base image is resolved: every stage starts from scratch or another stage.
struct NoBases;

impl BaseResolver for NoBases {
    fn resolve(
        &mut self,
        reference: &str,
        _: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        Err(format!("no base image {reference}").into())
    }
}

/// `n` ENV lines (each expanding an ARG and the ENV before it), with global ARGs, LABELs
/// and ARGs among them, and two stages.
fn many_env_lines(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n / 10 {
        text.push_str(&format!("ARG G{i}=g{i}\n"));
    }
    text.push_str("FROM scratch AS base\nARG ROOT=/opt\n");
    for i in 0..n {
        let prev = match i {
            0 => "ROOT".to_string(),
            _ => format!("V{}", i - 1),
        };
        text.push_str(&format!("ENV V{i}=${{ROOT}}/{i} W{i}=${{{prev}:+set}}\n"));
        if i % 10 == 0 {
            text.push_str(&format!("LABEL l{i}=${{V{i}}}\nARG A{i}=a\n"));
        }
    }
    text.push_str("RUN echo \"$V1\"\nFROM base\nENV LAST=${V1}\nRUN true\n");
    text
}

fn options() -> LowerOptions {
    let platform: Platform = "linux/amd64".parse().expect("platform");
    LowerOptions {
        target_platform: platform.clone(),
        build_platform: platform,
        build_args: Default::default(),
        target: None,
        all_stages: false,
    }
}

/// Bytes allocated to parse and lower a file of `n` ENV lines (what `build` does before
/// solving).
fn lowering_cost(n: usize) -> u64 {
    let text = many_env_lines(n);
    allocated_by(|| {
        let df = rbuild_dockerfile::parse("Dockerfile", text.as_bytes()).expect("parses");
        let graph = rbuild_graph::lower(&df, &options(), &mut NoBases).expect("lowers");
        assert_eq!(graph.stages.len(), 2);
        assert_eq!(
            graph.stages[0].config.config.env.as_ref().map(Vec::len),
            Some(2 * n + 1),
        );
    })
}

/// Bytes allocated to parse and lint the same file (`build --check`).
fn check_cost(n: usize) -> u64 {
    let text = many_env_lines(n);
    allocated_by(|| {
        let df = rbuild_dockerfile::parse("Dockerfile", text.as_bytes()).expect("parses");
        let (lints, errors) = rbuild_graph::check(&df, &options(), &mut NoBases);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(lints.is_empty(), "{lints:?}");
    })
}

/// `n` ENV lines, each naming a variable nothing defines, one edit away from the name
/// the line before defined (an UndefinedVar finding each, with a search for a similar
/// defined name).
fn many_undefined_names(n: usize) -> String {
    let mut text = String::from("FROM scratch\nENV NAME_0=x\n");
    for i in 1..=n {
        text.push_str(&format!("ENV NAME_{i}=${{NAME_{}_}}\n", i - 1));
    }
    text
}

/// Bytes allocated to parse and lint a file of `n` undefined names.
fn undefined_names_cost(n: usize) -> u64 {
    let text = many_undefined_names(n);
    allocated_by(|| {
        let df = rbuild_dockerfile::parse("Dockerfile", text.as_bytes()).expect("parses");
        let (lints, errors) = rbuild_graph::check(&df, &options(), &mut NoBases);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lints.len(), n);
        assert!(lints.iter().all(|l| l.rule == "UndefinedVar"));
        // The first findings still suggest the name the line before defined.
        let first = &lints[0].diagnostic.message;
        assert!(
            first.contains("'$NAME_0_' (did you mean $NAME_0?)"),
            "{first}"
        );
    })
}

/// Bytes allocated to parse and lint `n` ENV and ARG lines, each pair followed by a RUN.
/// A build keeps each RUN's whole environment and ARG list (history) for the step; a
/// check has no use for them.
fn env_and_run_check_cost(n: usize) -> u64 {
    let mut text = String::from("FROM scratch\n");
    for i in 0..n {
        text.push_str(&format!("ENV V{i}=value-{i}\nARG A{i}=a\nRUN [\"true\"]\n"));
    }
    allocated_by(|| {
        let df = rbuild_dockerfile::parse("Dockerfile", text.as_bytes()).expect("parses");
        let (lints, errors) = rbuild_graph::check(&df, &options(), &mut NoBases);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(lints.is_empty(), "{lints:?}");
    })
}

/// Bytes allocated to parse and lint `n` stages, each a RUN that mounts the stage before.
fn many_stages_check_cost(n: usize) -> u64 {
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..n {
        let prev = i - 1;
        text.push_str(&format!(
            "FROM scratch AS s{i}\nRUN --mount=from=s{prev},target=/p [\"true\"]\n"
        ));
    }
    allocated_by(|| {
        let df = rbuild_dockerfile::parse("Dockerfile", text.as_bytes()).expect("parses");
        let (lints, errors) = rbuild_graph::check(&df, &options(), &mut NoBases);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(lints.is_empty(), "{lints:?}");
    })
}

/// Ten times the lines may cost at most twenty times the bytes (quadratic work would
/// cost a hundred times).
fn assert_near_linear(small: u64, large: u64) {
    assert!(
        large <= small * 20,
        "the smaller file allocated {small} bytes, ten times as many lines {large} bytes ({}x)",
        large / small.max(1)
    );
}

#[test]
fn lowering_many_env_lines_is_linear() {
    assert_near_linear(lowering_cost(2_000), lowering_cost(20_000));
}

#[test]
fn linting_many_env_lines_is_linear() {
    assert_near_linear(check_cost(2_000), check_cost(20_000));
}

#[test]
fn linting_many_undefined_names_is_linear() {
    assert_near_linear(undefined_names_cost(2_000), undefined_names_cost(20_000));
}

#[test]
fn linting_env_lines_between_runs_is_linear() {
    assert_near_linear(env_and_run_check_cost(500), env_and_run_check_cost(5_000));
}

#[test]
fn linting_many_stages_is_linear() {
    assert_near_linear(many_stages_check_cost(500), many_stages_check_cost(5_000));
}
