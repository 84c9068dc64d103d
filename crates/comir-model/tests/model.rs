//! Tests of the CoMIR networks and losses on the Flex CPU backend.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use comir_model::loss::{
    activation_decay, info_nce, rot90, rot90_inverse, similarity_matrix, Critic,
};
use comir_model::{DenseUNetConfig, ModelError, RepresentationNet, UNetConfig};

fn cpu() -> Device {
    Device::flex()
}

/// Deterministic pseudo-random values in [-1, 1).
fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn tensor4(v: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

fn scalar(t: Tensor<1>) -> f64 {
    to_vec(t)[0] as f64
}

// ---------------------------------------------------------------------------
// Independent f64 reference of the InfoNCE loss (plain loops).

fn ref_sim(x: &[f64], y: &[f64], critic: Critic) -> f64 {
    let f = x.len() as f64;
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    match critic {
        Critic::Mse => -d.iter().map(|v| v * v).sum::<f64>() / f,
        Critic::Euclidean => -(d.iter().map(|v| v * v).sum::<f64>() / f).sqrt(),
        Critic::L1 => -d.iter().map(|v| v.abs()).sum::<f64>() / f,
        Critic::L3 => -(d.iter().map(|v| v.abs().powi(3)).sum::<f64>() / f).cbrt(),
        Critic::Linf => -d.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        Critic::Huber => -d.iter().map(|v| (1.0 + v * v).sqrt()).sum::<f64>() / f,
        Critic::Dot => x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / f,
        Critic::Cosine => {
            let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let ny = y.iter().map(|v| v * v).sum::<f64>().sqrt();
            x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / (nx * ny)
        }
    }
}

/// `za`, `zb`: N flattened samples each.
fn ref_info_nce(za: &[Vec<f64>], zb: &[Vec<f64>], critic: Critic, tau: f64) -> f64 {
    let n = za.len();
    let z: Vec<&Vec<f64>> = za.iter().chain(zb.iter()).collect();
    let m = 2 * n;
    let mut total = 0.0;
    for i in 0..m {
        let pos = ref_sim(z[i], z[(i + n) % m], critic) / tau;
        let mut denom = 0.0;
        for j in 0..m {
            if j != i {
                denom += (ref_sim(z[i], z[j], critic) / tau).exp();
            }
        }
        total += -pos + denom.ln();
    }
    total / m as f64
}

fn split_samples(v: &[f32], n: usize) -> Vec<Vec<f64>> {
    let f = v.len() / n;
    (0..n)
        .map(|i| v[i * f..(i + 1) * f].iter().map(|&x| x as f64).collect())
        .collect()
}

#[test]
fn info_nce_matches_f64_reference() {
    let device = cpu();
    let (n, shape) = (3usize, [3usize, 2, 3, 2]);
    let numel = shape.iter().product::<usize>();
    let a = lcg(1, numel);
    // B is correlated with A so that the positives matter.
    let b: Vec<f32> = a
        .iter()
        .zip(lcg(2, numel))
        .map(|(x, e)| 0.8 * x + 0.3 * e)
        .collect();
    for critic in Critic::ALL {
        for tau in [0.3, 1.0, 2.5] {
            let got = scalar(info_nce(
                tensor4(&a, shape, &device),
                tensor4(&b, shape, &device),
                critic,
                tau,
            ));
            let want = ref_info_nce(&split_samples(&a, n), &split_samples(&b, n), critic, tau);
            assert!(
                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                "{critic} tau={tau}: got {got}, want {want}"
            );
        }
    }
}

#[test]
fn similarity_matrix_matches_pairwise_reference() {
    let device = cpu();
    let (m, f) = (4usize, 5usize);
    let v = lcg(7, m * f);
    let rows = split_samples(&v, m);
    for critic in Critic::ALL {
        let z = Tensor::<2>::from_data(TensorData::new(v.clone(), [m, f]), &device);
        let s = to_vec(similarity_matrix(z, critic));
        for i in 0..m {
            for j in 0..m {
                if i == j {
                    continue; // the diagonal is masked by info_nce
                }
                let want = ref_sim(&rows[i], &rows[j], critic);
                let got = s[i * m + j] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "{critic} ({i},{j}): {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn info_nce_prefers_aligned_pairs() {
    // Identical modalities give a lower loss than shuffled ones.
    let device = cpu();
    let shape = [4usize, 1, 4, 4];
    let a = lcg(11, 64);
    let mut shuffled = a[16..].to_vec();
    shuffled.extend_from_slice(&a[..16]);
    let aligned = scalar(info_nce(
        tensor4(&a, shape, &device),
        tensor4(&a, shape, &device),
        Critic::Mse,
        0.5,
    ));
    let wrong = scalar(info_nce(
        tensor4(&a, shape, &device),
        tensor4(&shuffled, shape, &device),
        Critic::Mse,
        0.5,
    ));
    assert!(
        aligned < wrong,
        "aligned {aligned} should be below shuffled {wrong}"
    );
}

#[test]
fn info_nce_gradient_matches_finite_differences() {
    let plain = cpu();
    let ad = cpu().autodiff();
    let shape = [3usize, 1, 2, 2];
    let numel = 12;
    let a = lcg(21, numel);
    let b: Vec<f32> = a
        .iter()
        .zip(lcg(22, numel))
        .map(|(x, e)| 0.5 * x + 0.5 * e)
        .collect();
    let tau = 0.7;
    for critic in [
        Critic::Mse,
        Critic::Cosine,
        Critic::L1,
        Critic::Huber,
        Critic::Euclidean,
        Critic::Dot,
    ] {
        let ta = tensor4(&a, shape, &ad).require_grad();
        let tb = tensor4(&b, shape, &ad).require_grad();
        let loss = info_nce(ta.clone(), tb.clone(), critic, tau);
        let grads = loss.backward();
        let ga = to_vec(ta.grad(&grads).expect("grad of za"));
        let gb = to_vec(tb.grad(&grads).expect("grad of zb"));
        let eval = |a: &[f32], b: &[f32]| {
            scalar(info_nce(
                tensor4(a, shape, &plain),
                tensor4(b, shape, &plain),
                critic,
                tau,
            ))
        };
        let h = 1e-2f32;
        let mut max_grad = 0.0f64;
        for (which, g) in [(0, &ga), (1, &gb)] {
            for k in 0..numel {
                let (mut ap, mut am, mut bp, mut bm) = (a.clone(), a.clone(), b.clone(), b.clone());
                if which == 0 {
                    ap[k] += h;
                    am[k] -= h;
                } else {
                    bp[k] += h;
                    bm[k] -= h;
                }
                let fd = (eval(&ap, &bp) - eval(&am, &bm)) / (2.0 * h as f64);
                let an = g[k] as f64;
                max_grad = max_grad.max(an.abs());
                assert!(
                    (fd - an).abs() < 3e-3 + 2e-2 * fd.abs(),
                    "{critic}: d/d{}[{k}] autodiff {an} vs finite difference {fd}",
                    ["za", "zb"][which]
                );
            }
        }
        assert!(max_grad > 1e-3, "{critic}: gradient unexpectedly vanishes");
    }
}

#[test]
fn activation_decay_matches_definition() {
    let device = cpu();
    let a = lcg(31, 8);
    let b = lcg(32, 8);
    let ta = tensor4(&a, [2, 1, 2, 2], &device);
    let tb = tensor4(&b, [2, 1, 2, 2], &device);
    for p in [1.0, 2.0, 3.0] {
        let got = scalar(activation_decay(&[ta.clone(), tb.clone()], p));
        let s: f64 = a.iter().chain(&b).map(|&x| (x as f64).abs().powf(p)).sum();
        let want = (1.0 + s) / 16.0;
        assert!((got - want).abs() < 1e-5, "p={p}: {got} vs {want}");
    }
}

#[test]
fn critic_names_round_trip_and_errors() {
    for c in Critic::ALL {
        assert_eq!(c.name().parse::<Critic>(), Ok(c));
    }
    assert_eq!("MSE".parse::<Critic>(), Ok(Critic::Mse));
    assert_eq!(Critic::default(), Critic::Mse);
    let err = "gauss".parse::<Critic>().expect_err("unknown critic");
    let msg = err.to_string();
    assert!(
        msg.contains("gauss") && msg.contains("mse") && msg.contains("huber"),
        "{msg}"
    );
    let json = serde_json::to_string(&Critic::Linf).expect("serialize");
    assert_eq!(json, "\"linf\"");
}

// ---------------------------------------------------------------------------
// C4 helpers.

#[test]
fn rot90_inverse_is_identity_with_per_sample_k() {
    let device = cpu();
    let shape = [5usize, 2, 4, 4];
    let v = lcg(41, shape.iter().product());
    let ks = [0usize, 1, 2, 3, 5];
    let x = tensor4(&v, shape, &device);
    let r = rot90(x.clone(), &ks);
    assert_ne!(to_vec(r.clone()), v, "rotation must change the data");
    let back = to_vec(rot90_inverse(r, &ks));
    assert_eq!(back, v);
}

#[test]
fn rot90_matches_explicit_permutation() {
    let device = cpu();
    // Non-square, uniform k = 1: out[.., i, j] = x[.., j, W - 1 - i] (torch.rot90).
    let (n, c, h, w) = (2usize, 2usize, 3usize, 4usize);
    let v = lcg(51, n * c * h * w);
    let out = rot90(tensor4(&v, [n, c, h, w], &device), &[1, 1]);
    assert_eq!(out.dims(), [n, c, w, h]);
    let o = to_vec(out);
    let idx = |a: usize, b: usize, i: usize, j: usize, hh: usize, ww: usize| {
        ((a * c + b) * hh + i) * ww + j
    };
    for a in 0..n {
        for b in 0..c {
            for i in 0..w {
                for j in 0..h {
                    assert_eq!(o[idx(a, b, i, j, w, h)], v[idx(a, b, j, w - 1 - i, h, w)]);
                }
            }
        }
    }
    // Square, per-sample k: sample 0 by 1, sample 1 by 2, sample 2 by 3.
    let s = 3usize;
    let v = lcg(52, 3 * s * s);
    let o = to_vec(rot90(tensor4(&v, [3, 1, s, s], &device), &[1, 2, 3]));
    let at = |a: usize, i: usize, j: usize| (a * s + i) * s + j;
    for i in 0..s {
        for j in 0..s {
            assert_eq!(o[at(0, i, j)], v[at(0, j, s - 1 - i)]);
            assert_eq!(o[at(1, i, j)], v[at(1, s - 1 - i, s - 1 - j)]);
            assert_eq!(o[at(2, i, j)], v[at(2, s - 1 - j, i)]);
        }
    }
}

// ---------------------------------------------------------------------------
// Networks.

#[test]
fn densenet_parameter_counts_match_pytorch_reference() {
    let device = cpu();
    let count = |cfg: DenseUNetConfig| cfg.init(&device).num_trainable_params();
    assert_eq!(count(DenseUNetConfig::histology(1)), 1_053_244);
    assert_eq!(count(DenseUNetConfig::histology(3)), 1_053_820);
    assert_eq!(
        count(DenseUNetConfig::small(3).with_out_channels(3)),
        165_064
    );
    assert_eq!(
        count(DenseUNetConfig::small(1).with_out_channels(3)),
        164_776
    );
    // comir's own preset (not in the reference; the PyTorch network of bench/ agrees).
    assert_eq!(count(DenseUNetConfig::fast(1)), 46_260);
    // burn's own count includes the running mean/var buffers (2 per BN channel;
    // 8,466 BN channels in the histology network).
    let net = DenseUNetConfig::histology(1).init(&device);
    assert_eq!(net.num_params(), 1_053_244 + 2 * 8_466);
}

#[test]
fn densenet_channel_plan_matches_notes() {
    let plan = DenseUNetConfig::histology(1).channel_plan().expect("valid");
    assert_eq!(plan.skips, vec![80, 108, 129, 144, 156, 165]);
    assert_eq!(plan.compressed, vec![60, 81, 96, 108, 117, 123]);
    assert_eq!(plan.bottleneck, 48);
    assert_eq!(plan.up_inputs, vec![213, 204, 192, 177, 156, 128]);
    assert_eq!(plan.last, 176);
    assert_eq!(DenseUNetConfig::histology(1).required_multiple(), 64);
    assert_eq!(DenseUNetConfig::small(1).required_multiple(), 8);
}

#[test]
fn config_validation_and_serde() {
    let mut cfg = DenseUNetConfig::small(1);
    cfg.up_blocks.pop();
    assert!(matches!(cfg.validate(), Err(ModelError::InvalidConfig(_))));
    let mut cfg = DenseUNetConfig::small(1);
    cfg.compression = 0.0;
    assert!(cfg.validate().is_err());
    let cfg = DenseUNetConfig::histology(3);
    cfg.validate().expect("histology preset is valid");
    let json = serde_json::to_string(&cfg).expect("serialize");
    let back: DenseUNetConfig = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, cfg);
    let partial: DenseUNetConfig = serde_json::from_str(r#"{"in_channels": 3}"#).expect("defaults");
    assert_eq!(partial.growth_rate, 12);
    assert_eq!(partial.out_channels, 1);
    assert_eq!(partial.dropout, 0.0);
    assert!(UNetConfig {
        depth: 0,
        ..Default::default()
    }
    .validate()
    .is_err());
}

#[test]
fn densenet_histology_forward_shapes() {
    let device = cpu();
    let net = DenseUNetConfig::histology(1).init(&device);
    let x = tensor4(&lcg(61, 128 * 128), [1, 1, 128, 128], &device);
    let out = net.forward(x);
    assert_eq!(out.representation.dims(), [1, 1, 128, 128]);
    assert_eq!(out.bottleneck.dims(), [1, 48, 2, 2]);
    assert!(to_vec(out.representation).iter().all(|v| v.is_finite()));
}

#[test]
fn small_networks_forward_shapes_and_input_checks() {
    let device = cpu();
    let net = DenseUNetConfig::small(3).with_out_channels(3).init(&device);
    let x = tensor4(&lcg(71, 2 * 3 * 32 * 32), [2, 3, 32, 32], &device);
    let out = RepresentationNet::forward(&net, x);
    assert_eq!(out.representation.dims(), [2, 3, 32, 32]);
    assert_eq!(out.bottleneck.dims(), [2, 36, 4, 4]);

    let bad = tensor4(&lcg(72, 3 * 20 * 20), [1, 3, 20, 20], &device);
    assert!(matches!(
        net.try_forward(bad),
        Err(ModelError::InputSize { multiple: 8, .. })
    ));
    let bad = tensor4(&lcg(73, 32 * 32), [1, 1, 32, 32], &device);
    assert!(matches!(
        net.try_forward(bad),
        Err(ModelError::InputChannels {
            expected: 3,
            got: 1
        })
    ));

    let unet = UNetConfig {
        in_channels: 2,
        out_channels: 3,
        base_width: 4,
        depth: 2,
    }
    .init(&device);
    assert_eq!(unet.required_multiple(), 4);
    let out = unet.forward(tensor4(&lcg(74, 2 * 2 * 16 * 16), [2, 2, 16, 16], &device));
    assert_eq!(out.representation.dims(), [2, 3, 16, 16]);
    assert_eq!(out.bottleneck.dims(), [2, 16, 4, 4]);
}

fn tiny_dense(in_channels: usize) -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels,
        out_channels: 2,
        init_filters: 6,
        down_blocks: vec![2, 2],
        up_blocks: vec![2, 2],
        bottleneck_layers: 2,
        growth_rate: 4,
        compression: 0.75,
        dropout: 0.0,
    }
}

#[test]
fn batchnorm_switches_between_batch_and_running_statistics() {
    let device = cpu().autodiff();
    let net = tiny_dense(1).init(&device);
    let x = tensor4(&lcg(81, 2 * 16 * 16), [2, 1, 16, 16], &device)
        .mul_scalar(3.0)
        .add_scalar(1.0);
    let train = to_vec(net.forward(x.clone()).representation);
    let eval_net = net.valid();
    let eval = to_vec(eval_net.forward(x.without_autodiff()).representation);
    let diff: f32 = train.iter().zip(&eval).map(|(a, b)| (a - b).abs()).sum();
    assert!(
        diff > 1e-3,
        "training (batch stats) and eval (running stats) outputs should differ"
    );
}

#[test]
fn contrastive_training_decreases_loss() {
    let device = cpu().autodiff();
    device.seed(7);
    let mut net_a = tiny_dense(1).init(&device);
    let mut net_b = UNetConfig {
        in_channels: 2,
        out_channels: 2,
        base_width: 4,
        depth: 2,
    }
    .init(&device);
    let (n, s) = (4usize, 16usize);
    // Modality A: smooth random patterns; modality B: a nonlinear two-channel
    // transform of A (inverted intensity and squared intensity).
    let a: Vec<f32> = lcg(91, n * s * s);
    let mut b = Vec::with_capacity(2 * n * s * s);
    for i in 0..n {
        let img = &a[i * s * s..(i + 1) * s * s];
        b.extend(img.iter().map(|v| 1.0 - v));
        b.extend(img.iter().map(|v| v * v));
    }
    let xa = tensor4(&a, [n, 1, s, s], &device);
    let xb = tensor4(&b, [n, 2, s, s], &device);
    let mut opt_a = AdamConfig::new().init();
    let mut opt_b = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..30 {
        let za = net_a.forward(xa.clone()).representation;
        let zb = net_b.forward(xb.clone()).representation;
        let loss = info_nce(za, zb, Critic::Mse, 0.5);
        losses.push(scalar(loss.clone()));
        let mut grads = loss.backward();
        let ga = GradientsParams::from_module(&mut grads, &net_a);
        let gb = GradientsParams::from_module(&mut grads, &net_b);
        net_a = opt_a.step(1e-2, net_a, ga);
        net_b = opt_b.step(1e-2, net_b, gb);
    }
    eprintln!("info_nce during training: {losses:?}");
    let first = losses[0];
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        last < 0.8 * first,
        "loss did not decrease enough: {losses:?}"
    );
}
