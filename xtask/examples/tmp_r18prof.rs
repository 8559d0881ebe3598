use burn::tensor::{Device, Distribution, Tensor};
use relata_backbone::{ResNetConfig, ResNetDepth};
fn main() {
    let mode = std::env::args().nth(1).unwrap_or("bwd".into());
    let dev = Device::flex().autodiff();
    let dev = if mode == "fwd" { Device::flex() } else { dev };
    let model = ResNetConfig::new(ResNetDepth::ResNet18)
        .with_num_classes(Some(1000))
        .init(&dev);
    let x = Tensor::<4>::random([16, 3, 112, 112], Distribution::Normal(0.0, 1.0), &dev);
    let reps = 15;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        let y = model.forward(x.clone());
        if mode == "fwd" {
            let _ = y.into_data();
        } else {
            drop(y.mean().backward());
        }
    }
    println!(
        "{mode}: {:.4} s per step",
        t.elapsed().as_secs_f64() / reps as f64
    );
}
