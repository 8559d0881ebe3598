//! Parity of HREM's relation module and losses with a PyTorch implementation written from the
//! spec (`fixtures/hrem/make_hrem.py`): same weights and inputs; fragment scores (valid slots
//! and the released code's), connections,
//! relevance, Fusion and Standalone outputs, L_reg, both triplet losses, the full loss and its
//! gradients, within 1e-4 relative.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::import_with_remap;
use relata_dataset::rng::SeededRng;
use relata_hrem::config::{EncoderConfig, FragmentSlots, Interaction, Negatives, RelationConfig};
use relata_hrem::loss::{
    Triples, distance_log_weight, distance_weighted_triples, released_distance_weighted_triples,
    released_weights, relevance_regulariser, triplet_loss, triplet_sum,
};
use relata_hrem::relation::{
    RelationModule, connections, distance_kernel, fragment_scores, relation_module,
};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hrem")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("hrem_ref.json")).unwrap()).unwrap()
}

fn floats(v: &Value, key: &str) -> Vec<f32> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A list of sizes.
fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn sizes(v: &Value, key: &str) -> Vec<usize> {
    usizes(&v["meta"][key])
}

/// One size from the reference's `meta`.
fn meta(v: &Value, key: &str) -> usize {
    v["meta"][key].as_u64().unwrap() as usize
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// max |a − b| / max |b|.
fn rel_error(got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn assert_close(name: &str, got: &[f32], expected: &[f32]) {
    let e = rel_error(got, expected);
    assert!(
        e < 1e-4,
        "{name}: relative error {e}\n got {got:?}\nwant {expected:?}"
    );
}

struct Case {
    meta: Value,
    n: usize,
    d: usize,
}

impl Case {
    fn new(r: &Value) -> Self {
        let get = |k: &str| meta(r, k);
        Self {
            meta: r["meta"].clone(),
            n: get("n"),
            d: get("d"),
        }
    }

    fn module(&self, interaction: Interaction, file: &str, device: &Device) -> RelationModule {
        let m = &self.meta;
        let config = RelationConfig::new()
            .with_top_k(m["k"].as_u64().unwrap() as usize)
            .with_lambda(m["lambda"].as_f64().unwrap())
            .with_sigma(m["sigma"].as_f64().unwrap())
            .with_threshold(m["threshold"].as_f64().unwrap())
            .with_interaction(interaction);
        let encoder = EncoderConfig::new(4)
            .with_embed(self.d)
            .with_heads(m["heads"].as_u64().unwrap() as usize)
            .with_ff(m["ff"].as_u64().unwrap() as usize)
            .with_dropout(0.0);
        let mut module = relation_module(&config, &encoder, device);
        let report = import_with_remap(&mut module, &dir().join(file), &[], &[]).unwrap();
        assert!(report.applied >= 20, "{report:?}");
        module
    }
}

fn tensor2(r: &Value, key: &str, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(floats(r, key), shape), device)
}

fn tensor3(r: &Value, key: &str, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(floats(r, key), shape), device)
}

/// The released code's slots read the features in the padding (every region slot, max(len, k)
/// word slots, a zero feature past the words' width): on inputs whose padding holds features,
/// the scores match the reference and differ from the valid-slot scores.
#[test]
fn released_fragment_slots_match_pytorch() {
    let r = reference();
    let released = &r["released"];
    let case = Case::new(&r);
    let (n, d, k) = (case.n, case.d, meta(&r, "k"));
    let (lr, lw) = (meta(&r, "regions"), meta(&r, "words"));
    let device = Device::flex();
    let region_lengths = sizes(&r, "region_lengths");
    let regions = tensor3(released, "R", [n, lr, d], &device);
    let words = tensor3(released, "C", [n, lw, d], &device);
    let cases = [
        ("", words.clone(), sizes(&r, "word_lengths")),
        (
            "narrow_",
            words.slice([0..n, 0..2, 0..d]),
            usizes(&released["narrow_word_lengths"]),
        ),
    ];
    for (prefix, words, word_lengths) in cases {
        let scores = |slots| {
            fragment_scores(
                regions.clone(),
                &region_lengths,
                words.clone(),
                &word_lengths,
                k,
                slots,
            )
        };
        let (got, valid) = (
            scores(FragmentSlots::Released),
            scores(FragmentSlots::Valid),
        );
        let pairs = [
            ("p_t2i", got.p_t2i, valid.p_t2i),
            ("p_i2t", got.p_i2t, valid.p_i2t),
        ];
        for (key, got, valid) in pairs {
            let (got, valid) = (values(got), values(valid));
            let key = format!("{prefix}{key}");
            assert_close(&key, &got, &floats(released, &key));
            assert!(
                rel_error(&valid, &got) > 1e-3,
                "{key}: padding changed nothing"
            );
        }
        for (key, got) in [("q_t2i", got.q_t2i), ("q_i2t", got.q_i2t)] {
            let key = format!("{prefix}{key}");
            assert_close(&key, &values(got), &floats(released, &key));
        }
    }
}

#[test]
fn relation_module_matches_pytorch() {
    let r = reference();
    let case = Case::new(&r);
    let (n, d) = (case.n, case.d);
    let device = Device::flex();
    let (lr, lw) = (meta(&r, "regions"), meta(&r, "words"));
    let region_lengths = sizes(&r, "region_lengths");
    let word_lengths = sizes(&r, "word_lengths");
    let k = meta(&r, "k");
    let regions = tensor3(&r, "R", [n, lr, d], &device);
    let words = tensor3(&r, "C", [n, lw, d], &device);
    let v = tensor2(&r, "v", [n, d], &device);
    let u = tensor2(&r, "u", [n, d], &device);

    let scores = fragment_scores(
        regions,
        &region_lengths,
        words,
        &word_lengths,
        k,
        FragmentSlots::Valid,
    );
    assert_close("p_t2i", &values(scores.p_t2i.clone()), &floats(&r, "p_t2i"));
    assert_close("q_t2i", &values(scores.q_t2i.clone()), &floats(&r, "q_t2i"));
    assert_close("p_i2t", &values(scores.p_i2t.clone()), &floats(&r, "p_i2t"));
    assert_close("q_i2t", &values(scores.q_i2t.clone()), &floats(&r, "q_i2t"));

    let threshold = r["meta"]["threshold"].as_f64().unwrap();
    let links = connections(&v, &u, &scores, threshold);
    let as_bool = |key: &str| floats(&r, key).iter().map(|&x| x > 0.5).collect::<Vec<_>>();
    assert_eq!(links.ii, as_bool("A_ii"));
    assert_eq!(links.tt, as_bool("A_tt"));
    assert_eq!(links.it, as_bool("A_it"));
    assert_eq!(links.ti, as_bool("A_ti"));

    let fusion = case.module(Interaction::Fusion, "hrem_fusion.pth", &device);
    let (s_i2t, s_t2i) = fusion.relevance(&scores);
    assert_close("S_i2t", &values(s_i2t), &floats(&r, "S_i2t"));
    assert_close("S_t2i", &values(s_t2i), &floats(&r, "S_t2i"));
    let sigma = r["meta"]["sigma"].as_f64().unwrap();
    assert_close(
        "S_ii",
        &values(distance_kernel(v.clone(), v.clone(), sigma)),
        &floats(&r, "S_ii"),
    );

    let out = fusion.forward(v.clone(), u.clone(), &scores, &links);
    assert_close("fusion v̄", &values(out.v_bar), &floats(&r, "fusion_v"));
    assert_close("fusion ū", &values(out.u_bar), &floats(&r, "fusion_u"));

    let standalone = case.module(Interaction::Standalone, "hrem_standalone.pth", &device);
    let out = standalone.forward(v, u, &scores, &links);
    assert_close(
        "standalone v̄",
        &values(out.v_bar),
        &floats(&r, "standalone_v"),
    );
    assert_close(
        "standalone ū",
        &values(out.u_bar),
        &floats(&r, "standalone_u"),
    );
}

#[test]
fn losses_and_gradients_match_pytorch() {
    let r = reference();
    let case = Case::new(&r);
    let (n, d) = (case.n, case.d);
    let device = Device::flex().autodiff();
    let (lr, lw) = (meta(&r, "regions"), meta(&r, "words"));
    let region_lengths = sizes(&r, "region_lengths");
    let word_lengths = sizes(&r, "word_lengths");
    let image_ids = sizes(&r, "image_ids");
    let k = meta(&r, "k");
    let margin = r["meta"]["margin"].as_f64().unwrap();
    let sigma = r["meta"]["sigma"].as_f64().unwrap();
    let v = tensor2(&r, "v", [n, d], &device).require_grad();
    let u = tensor2(&r, "u", [n, d], &device).require_grad();
    let module = case.module(Interaction::Fusion, "hrem_fusion.pth", &device);

    let scores = fragment_scores(
        tensor3(&r, "R", [n, lr, d], &device),
        &region_lengths,
        tensor3(&r, "C", [n, lw, d], &device),
        &word_lengths,
        k,
        FragmentSlots::Valid,
    );
    let links = connections(&v, &u, &scores, r["meta"]["threshold"].as_f64().unwrap());
    let out = module.forward(v.clone(), u.clone(), &scores, &links);
    let mut rng = SeededRng::new(0);
    let mut tri = |a: Tensor<2>, b: Tensor<2>| {
        triplet_loss(a, b, &image_ids, margin, Negatives::Hardest, &mut || {
            rng.next_f64()
        })
    };
    let base = tri(v.clone(), u.clone());
    let reg = relevance_regulariser(out.s_i2t, out.s_t2i, v.clone(), u.clone(), sigma);
    let total = base.clone()
        + tri(out.v_bar.clone(), out.u_bar.clone())
        + tri(out.v_bar, u.clone())
        + tri(v.clone(), out.u_bar)
        + reg.clone().mul_scalar(10.0);
    let scalar = |t: Tensor<1>| t.into_data().iter::<f32>().next().unwrap();
    assert_close("tri", &[scalar(base)], &[r["tri"].as_f64().unwrap() as f32]);
    assert_close("reg", &[scalar(reg)], &[r["reg"].as_f64().unwrap() as f32]);
    assert_close(
        "total",
        &[scalar(total.clone())],
        &[r["total"].as_f64().unwrap() as f32],
    );

    let grads = total.backward();
    assert_close(
        "∂v",
        &values(v.grad(&grads).unwrap()),
        &floats(&r, "grad_v"),
    );
    assert_close(
        "∂u",
        &values(u.grad(&grads).unwrap()),
        &floats(&r, "grad_u"),
    );
    // burn stores Linear weights as [in, out]; PyTorch as [out, in].
    let fc1 = module.t2i.fc1.weight.val();
    let g = fc1.grad(&grads).unwrap().transpose();
    assert_close("∂t2i.fc1.weight", &values(g), &floats(&r, "grad_t2i_fc1"));
    let l1 = module.layer.linear1.weight.val();
    let g = l1.grad(&grads).unwrap().transpose();
    assert_close(
        "∂layer.linear1.weight",
        &values(g),
        &floats(&r, "grad_fusion_linear1"),
    );
    let _ = module.valid();
}

#[test]
fn distance_weighted_parts_match_pytorch() {
    let r = reference();
    let case = Case::new(&r);
    let (n, d) = (case.n, case.d);
    let device = Device::flex();
    let probe = floats(&r, "probe_sims");
    let got: Vec<f32> = probe
        .iter()
        .map(|&s| distance_log_weight(s, 512) as f32)
        .collect();
    assert_close("log weights", &got, &floats(&r, "probe_log_weights"));
    let triples: Triples = r["dw_triples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t = usizes(t);
            (t[0], t[1], t[2])
        })
        .collect();
    let v = tensor2(&r, "v", [n, d], &device);
    let u = tensor2(&r, "u", [n, d], &device);
    let margin = r["meta"]["margin"].as_f64().unwrap();
    let loss = triplet_sum(v.matmul(u.transpose()), &triples, margin);
    assert_close(
        "distance-weighted L_tri",
        &values(loss),
        &[r["dw_loss"].as_f64().unwrap() as f32],
    );
}

fn triples_of(v: &Value) -> Option<Triples> {
    v.as_array().map(|list| {
        list.iter()
            .map(|t| {
                let t = usizes(t);
                (t[0], t[1], t[2])
            })
            .collect()
    })
}

/// The distance-weighted draws on fixed uniform numbers (`make_hrem.py`, "sampler"): the
/// released code's float32 weights row by row, and its draws — the same triples, or, where a
/// row's weights all underflow (a negative far past the cutoff sets the row's maximum), the
/// whole direction dropped. relata's default sampler draws the same triples where nothing
/// underflows and keeps the eligible negatives of the row that does (docs/hrem.md,
/// "Design choices").
#[test]
fn distance_weighted_draws_match_the_released_arithmetic() {
    let r = reference();
    let s = &r["sampler"];
    let ids = usizes(&s["image_ids"]);
    let n = ids.len();
    let positive: Vec<bool> = (0..n * n).map(|k| ids[k / n] == ids[k % n]).collect();
    let uniforms: Vec<f64> = s["uniforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for case in [
        "typical_rows",
        "typical_cols",
        "underflow_rows",
        "underflow_cols",
    ] {
        let c = &s[case];
        let sims = floats(c, "sims");
        let weights: Vec<f32> = (0..n)
            .flat_map(|a| {
                let row = a * n..(a + 1) * n;
                released_weights(&sims[row.clone()], &positive[row], 512, 1.7)
            })
            .collect();
        let want = floats(c, "weights");
        let err = weights
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "{case}: weights differ by {err}");

        let mut used = 0;
        let mut draw = || {
            used += 1;
            uniforms[used - 1]
        };
        let released =
            released_distance_weighted_triples(&sims, &positive, n, n, 512, 1.7, &mut draw);
        assert_eq!(released, triples_of(&c["triples"]), "{case}");
        assert_eq!(used, c["draws"].as_u64().unwrap() as usize, "{case}");

        let mut used = 0;
        let mut draw = || {
            used += 1;
            uniforms[used - 1]
        };
        let ours = distance_weighted_triples(&sims, &positive, n, n, 512, 1.7, &mut draw);
        match released {
            Some(t) => assert_eq!(ours, t, "{case}: relata's default draws the same"),
            None => {
                // The released code drops the direction; relata keeps one triple per positive
                // pair whose anchor has an eligible negative — all of them here.
                assert_eq!(
                    ours.len(),
                    (0..n * n).filter(|&k| positive[k]).count(),
                    "{case}"
                );
                assert!(ours.iter().all(|&(a, _, neg)| !positive[a * n + neg]));
            }
        }
    }
}
