//! Prints the instruction sets this CPU runs and its FP32 peak as one JSON line, for the
//! benchmark scripts: `cargo run --release -p comir-cpu --example peak -- [THREADS]`.

use comir_cpu::{Isa, MeasuredPeak, Peak};

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(2);
    let detected = Isa::detected();
    let peak = Peak::estimate(detected, threads);
    let available: Vec<String> = Isa::available()
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect();
    // The measured peak of every instruction set the CPU runs, all threads at once.
    let measured: Vec<String> = Isa::available()
        .iter()
        .map(|&i| format!("\"{i}\": {:.1}", MeasuredPeak::measure(i, threads).gflops))
        .collect();
    println!(
        "{{\"detected\": \"{detected}\", \"available\": [{}], \"threads\": {threads}, \
         \"peak_gflops\": {:.1}, \"peak_source\": \"{}\", \"measured_gflops\": {{{}}}}}",
        available.join(", "),
        peak.gflops,
        peak.source,
        measured.join(", ")
    );
}
