/**
 * The training loop of the Iris example, free of any tracking: it reports each epoch's metrics to a callback,
 * and the program decides what to do with them. Tests run it directly.
 */
import type { PreparedIris } from "./data.js"
import { classNames, prepareIris } from "./data.js"
import type { Mlp } from "./mlp.js"
import { evaluate, initMlp, lossAndGradients, makeSgd, sgdStep } from "./mlp.js"
import { seededRandom, shuffleInPlace } from "./random.js"

/** The hyperparameters, keyed as they appear in the run's config. */
export interface TrainingConfig {
  readonly learning_rate: number
  readonly epochs: number
  readonly hidden_size: number
  readonly batch_size: number
  readonly seed: number
  readonly momentum: number
}

/** Settings that reach at least 90 % validation accuracy in a fraction of a second. */
export const defaultTrainingConfig: TrainingConfig = {
  learning_rate: 0.02,
  epochs: 80,
  hidden_size: 16,
  batch_size: 16,
  seed: 42,
  momentum: 0.9
}

/** Loss and accuracy on both parts of the data after one epoch; epochs count from 1. */
export interface EpochMetrics {
  readonly epoch: number
  readonly trainLoss: number
  readonly trainAccuracy: number
  readonly validationLoss: number
  readonly validationAccuracy: number
}

/** The trained network, every epoch's metrics, and the epoch with the best validation accuracy. */
export interface TrainingResult {
  readonly model: Mlp
  readonly history: ReadonlyArray<EpochMetrics>
  readonly bestValidationAccuracy: number
  readonly bestEpoch: number
}

/**
 * Trains a fresh network for `config.epochs` epochs of shuffled mini-batches and calls `onEpoch` after each.
 * The data defaults to Iris split with the config's seed; pass it in to reuse a split made earlier. The same
 * config always produces the same metrics.
 */
export const train = (
  config: TrainingConfig,
  onEpoch: (metrics: EpochMetrics) => void,
  data: PreparedIris = prepareIris(config.seed)
): TrainingResult => {
  const { train: trainSet, validation } = data
  const model = initMlp(
    { inputSize: trainSet.features[0].length, hiddenSize: config.hidden_size, classCount: classNames.length },
    seededRandom(config.seed, "weights")
  )
  const sgd = makeSgd(model, { learningRate: config.learning_rate, momentum: config.momentum })
  const batchOrder = seededRandom(config.seed, "batches")
  const order = trainSet.features.map((_, index) => index)

  const history: Array<EpochMetrics> = []
  let bestValidationAccuracy = -1
  let bestEpoch = 0
  for (let epoch = 1; epoch <= config.epochs; epoch++) {
    shuffleInPlace(order, batchOrder)
    for (let start = 0; start < order.length; start += config.batch_size) {
      const batch = order.slice(start, start + config.batch_size)
      const { gradients } = lossAndGradients(
        model,
        batch.map((index) => trainSet.features[index]),
        batch.map((index) => trainSet.labels[index])
      )
      sgdStep(model, sgd, gradients)
    }

    // Both parts are measured with the weights as they stand at the end of the epoch, so the two losses
    // are comparable (a running mean over the epoch's batches would mix weights of different ages).
    const onTrain = evaluate(model, trainSet.features, trainSet.labels)
    const onValidation = evaluate(model, validation.features, validation.labels)
    const metrics: EpochMetrics = {
      epoch,
      trainLoss: onTrain.loss,
      trainAccuracy: onTrain.accuracy,
      validationLoss: onValidation.loss,
      validationAccuracy: onValidation.accuracy
    }
    history.push(metrics)
    // Strictly better only: among equally good epochs the earliest one counts as best.
    if (metrics.validationAccuracy > bestValidationAccuracy) {
      bestValidationAccuracy = metrics.validationAccuracy
      bestEpoch = epoch
    }
    onEpoch(metrics)
  }

  return { model, history, bestValidationAccuracy, bestEpoch }
}
