//! Loads a saved multi-task model and prints its predictions.
//!
//! ```sh
//! cargo run --release -p mtl-model --example predict -- MODEL_DIR "first text" "second text"
//! cargo run --release -p mtl-model --example predict -- MODEL_DIR --task sentiment "a text"
//! ```

use mtl_model::MultiTaskClassifier;
use mtl_model::mtl_bert::Backend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: predict MODEL_DIR [--task TASK] TEXT...";
    let model_dir = args.next().ok_or(usage)?;
    let mut task = None;
    let mut texts = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--task" {
            task = Some(args.next().ok_or(usage)?);
        } else {
            texts.push(arg);
        }
    }
    if texts.is_empty() {
        return Err(usage.into());
    }

    let device = Backend::default_compiled().device(0)?;
    let model = MultiTaskClassifier::load(&model_dir, &device)?;
    let predictions = model.predict(&texts, task.as_deref(), 32)?;
    for (text, predictions) in texts.iter().zip(predictions) {
        println!("{text}");
        for p in predictions {
            println!(
                "  {:<12} {:<14} p={:.3}",
                p.task, p.label, p.probabilities[p.label_index]
            );
        }
    }
    Ok(())
}
