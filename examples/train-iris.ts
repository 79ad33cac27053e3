/**
 * Trains a small neural network on the Iris flowers and tracks the run with Weights & Biases.
 *
 *   npm start
 *   npm start -- --epochs 50 --learning_rate 0.1 --hidden_size 8
 *
 * Every epoch's losses and accuracies are logged; the best validation accuracy goes to the run summary.
 */
import wandb from "wandb-effect/promise"
import { prepareIris } from "./iris/data.js"
import { FlagError, parseTrainingFlags } from "./iris/flags.js"
import { defaultTrainingConfig, train } from "./iris/train.js"

const readFlags = () => {
  try {
    return parseTrainingFlags(process.argv.slice(2))
  } catch (error) {
    if (!(error instanceof FlagError)) throw error
    const known = Object.keys(defaultTrainingConfig).map((name) => `--${name}`)
    console.error(`${error.message}\nFlags: ${known.join(" ")}`)
    process.exit(2)
  }
}

const hyperparameters = { ...defaultTrainingConfig, ...readFlags() }
const iris = prepareIris(hyperparameters.seed)
const config = {
  ...hyperparameters,
  train_size: iris.train.labels.length,
  val_size: iris.validation.labels.length
}

// A failure from here on needs no handling of its own: the SDK finishes an unfinished run with exit code 1.
const run = await wandb.init({ project: "iris-mlp", jobType: "train", tags: ["iris", "mlp"], config })

const result = train(hyperparameters, (metrics) => {
  run.log({
    "train/loss": metrics.trainLoss,
    "train/acc": metrics.trainAccuracy,
    "val/loss": metrics.validationLoss,
    "val/acc": metrics.validationAccuracy,
    epoch: metrics.epoch
  })
  if (metrics.epoch % 10 === 0 || metrics.epoch === hyperparameters.epochs) {
    console.log(
      `epoch ${String(metrics.epoch).padStart(3)}  ` +
        `train loss ${metrics.trainLoss.toFixed(4)} acc ${metrics.trainAccuracy.toFixed(3)}  ` +
        `val loss ${metrics.validationLoss.toFixed(4)} acc ${metrics.validationAccuracy.toFixed(3)}`
    )
  }
}, iris)

await run.summary.update({ best_val_acc: result.bestValidationAccuracy, best_epoch: result.bestEpoch })
await run.finish()
