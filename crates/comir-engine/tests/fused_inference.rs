//! Inference runs each dense block as a fused group of rows (parts in parallel, a wavefront of
//! chunks in each, the seams last); the numbers must be those of the layers run one after the
//! other, bit for bit, on every instruction set. A test binary of its own: the switch between
//! the two is global.

use comir_cpu::Isa;
use comir_engine::{set_band_bytes, set_fused_inference, FastDenseUNet, Window, Workspace};
use comir_model::DenseUNetConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn fused_blocks_give_the_bits_of_the_layers_one_after_the_other() {
    // Growth 6 (the `fast` preset: direct kernels) and 12 with wide enough levels that some
    // layers take Winograd's 4 × 4 tiles, whose rows the schedule must keep whole. Bands small
    // enough that chunks hold 8 to 20 rows at the top level (several chunks a part, bands
    // inside each chunk), where a group runs fused.
    let configs = [
        (DenseUNetConfig::fast(1), 128, 80, 64 * 1024),
        (
            DenseUNetConfig {
                growth_rate: 12,
                init_filters: 8,
                ..DenseUNetConfig::small(2)
            },
            144,
            128,
            256 * 1024,
        ),
    ];
    // Three parts: two seams at the top level.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("thread pool");
    for (k, (cfg, h, w, band)) in configs.into_iter().enumerate() {
        set_band_bytes(band);
        let base = FastDenseUNet::new(&cfg, 7 + k as u64).expect("network");
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let x: Vec<f32> = (0..cfg.in_channels * h * w)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        for isa in Isa::available() {
            let mut net = base.clone();
            net.set_isa(isa).expect("available");
            let window = Window {
                y0: 21,
                y1: h - 17,
                x0: 9,
                x1: w - 30,
            };
            let run = |fused: bool| {
                set_fused_inference(fused);
                pool.install(|| {
                    let whole = net.forward_inference(&x, 1, h, w).expect("forward");
                    let part = net
                        .forward_inference_window(&mut Workspace::new(), &x, h, w, window)
                        .expect("window");
                    (whole, part)
                })
            };
            let (layers, layers_part) = run(false);
            let (fused, fused_part) = run(true);
            let what = format!("growth {}, {isa}", cfg.growth_rate);
            assert_eq!(
                bits(&fused.representation),
                bits(&layers.representation),
                "{what}: representation"
            );
            assert_eq!(
                bits(&fused.bottleneck),
                bits(&layers.bottleneck),
                "{what}: bottleneck"
            );
            assert_eq!(bits(&fused_part), bits(&layers_part), "{what}: window");
        }
    }
    set_fused_inference(true);
}
