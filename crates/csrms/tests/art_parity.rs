//! Fuzzy ART against the authors' released `art.py` (czt117/CSRMS): `fixtures/csrms/make_art.py`
//! ran their function on 200 × 8 inputs in [0, 1] at three vigilance/learning-rate settings, in
//! row order. relata's `FuzzyArt`, presented the same complement-coded rows in the same order,
//! must give the same assignments, cluster sizes and weights (within 1e-6). This checks
//! fidelity; `fuzzy_art`'s min–max scaling and seeded order are relata's reading around it.

use relata_csrms::art::complement_code;
use relata_csrms::{FuzzyArt, FuzzyArtConfig};

fn counts(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn fuzzy_art_matches_the_released_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/csrms/art.json");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let dim = reference["dim"].as_u64().unwrap() as usize;
    let inputs = floats(&reference["inputs"]);
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let (rho, beta) = (
            case["rho"].as_f64().unwrap(),
            case["beta"].as_f64().unwrap(),
        );
        let config = FuzzyArtConfig::new()
            .with_alpha(reference["alpha"].as_f64().unwrap())
            .with_rho(rho)
            .with_beta(beta);
        let mut art = FuzzyArt::new(config, dim).unwrap();
        let assignments: Vec<u64> = inputs
            .chunks(dim)
            .map(|row| art.present(&complement_code(row)).unwrap() as u64)
            .collect();
        assert_eq!(
            assignments,
            counts(&case["assignments"]),
            "rho {rho}, beta {beta}: assignments"
        );
        let clusters = case["clusters"].as_u64().unwrap() as usize;
        assert_eq!(art.clusters(), clusters);
        let sizes: Vec<u64> = art.sizes().iter().map(|&s| s as u64).collect();
        assert_eq!(sizes, counts(&case["sizes"]), "rho {rho}: cluster sizes");
        let weights = floats(&case["weights"]);
        for j in 0..clusters {
            for (k, (got, want)) in art
                .weight(j)
                .iter()
                .zip(&weights[j * 2 * dim..(j + 1) * 2 * dim])
                .enumerate()
            {
                assert!(
                    (got - want).abs() < 1e-6,
                    "rho {rho}: cluster {j} weight {k}: {got} vs {want}"
                );
            }
        }
    }
}
