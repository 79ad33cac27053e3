import { describe, expect, it } from "vitest"
import type { Dataset } from "../../examples/iris/data.js"
import {
  classNames,
  fitStandardization,
  loadIris,
  prepareIris,
  stratifiedSplit,
  subset,
  validationFraction
} from "../../examples/iris/data.js"
import { FlagError, parseTrainingFlags } from "../../examples/iris/flags.js"
import type { Mlp } from "../../examples/iris/mlp.js"
import { crossEntropy, initMlp, lossAndGradients, parameterArrays, softmax } from "../../examples/iris/mlp.js"
import { mulberry32, seededRandom, uniform } from "../../examples/iris/random.js"
import type { EpochMetrics } from "../../examples/iris/train.js"
import { defaultTrainingConfig, train } from "../../examples/iris/train.js"

const countByLabel = (labels: ReadonlyArray<number>): Array<number> =>
  classNames.map((_, label) => labels.filter((candidate) => candidate === label).length)

const columnMean = (dataset: Dataset, feature: number): number =>
  dataset.features.reduce((sum, row) => sum + row[feature], 0) / dataset.features.length

const columnDeviation = (dataset: Dataset, feature: number): number => {
  const mean = columnMean(dataset, feature)
  return Math.sqrt(dataset.features.reduce((sum, row) => sum + (row[feature] - mean) ** 2, 0) / dataset.features.length)
}

const collectEpochs = (config: typeof defaultTrainingConfig): Array<EpochMetrics> => {
  const epochs: Array<EpochMetrics> = []
  train(config, (metrics) => epochs.push(metrics))
  return epochs
}

describe("random", () => {
  it("repeats its sequence for a seed and stays within [0, 1)", () => {
    const draw = (random: () => number) => Array.from({ length: 1000 }, random)
    const first = draw(mulberry32(1))
    expect(draw(mulberry32(1))).toEqual(first)
    expect(draw(mulberry32(2))).not.toEqual(first)
    expect(first.every((value) => value >= 0 && value < 1)).toBe(true)
    expect(draw(seededRandom(1, "split"))).not.toEqual(draw(seededRandom(1, "weights")))
  })
})

describe("Iris data", () => {
  it("loads 150 rows of four measurements, 50 of each species encoded as 0..2", () => {
    const iris = loadIris()
    expect(iris.features).toHaveLength(150)
    expect(iris.features.every((row) => row instanceof Float64Array && row.length === 4)).toBe(true)
    expect(classNames).toEqual(["setosa", "versicolor", "virginica"])
    expect(countByLabel(iris.labels)).toEqual([50, 50, 50])
    expect(iris.labels[0]).toBe(0)
    expect(iris.labels[149]).toBe(2)
  })

  it("splits every species 80/20 into disjoint parts that cover all rows", () => {
    const { labels } = loadIris()
    const split = stratifiedSplit(labels, validationFraction, 42)

    expect(countByLabel(subset(loadIris(), split.trainIndices).labels)).toEqual([40, 40, 40])
    expect(countByLabel(subset(loadIris(), split.validationIndices).labels)).toEqual([10, 10, 10])
    const validation = new Set(split.validationIndices)
    expect(split.trainIndices.some((index) => validation.has(index))).toBe(false)
    expect([...split.trainIndices, ...split.validationIndices].sort((a, b) => a - b)).toEqual(
      Array.from({ length: 150 }, (_, index) => index)
    )
  })

  it("splits the same way for the same seed and differently for another", () => {
    const { labels } = loadIris()
    const split = stratifiedSplit(labels, validationFraction, 42)
    expect(stratifiedSplit(labels, validationFraction, 42)).toEqual(split)
    expect(stratifiedSplit(labels, validationFraction, 43).validationIndices).not.toEqual(split.validationIndices)
  })

  it("standardises both parts with statistics of the training part only", () => {
    const iris = loadIris()
    const prepared = prepareIris(42)
    const rawTrain = subset(iris, prepared.split.trainIndices)
    const rawValidation = subset(iris, prepared.split.validationIndices)

    for (let feature = 0; feature < 4; feature++) {
      expect(prepared.standardization.mean[feature]).toBeCloseTo(columnMean(rawTrain, feature), 12)
      expect(prepared.standardization.deviation[feature]).toBeCloseTo(columnDeviation(rawTrain, feature), 12)
      // The training part comes out centred and unit-scaled; the validation part, scaled by the same
      // statistics, does not, which it would if its own rows had been used.
      expect(columnMean(prepared.train, feature)).toBeCloseTo(0, 12)
      expect(columnDeviation(prepared.train, feature)).toBeCloseTo(1, 12)
      expect(Math.abs(columnMean(prepared.validation, feature))).toBeGreaterThan(1e-6)
      prepared.validation.features.forEach((row, example) => {
        const expected = (rawValidation.features[example][feature] - columnMean(rawTrain, feature)) /
          columnDeviation(rawTrain, feature)
        expect(row[feature]).toBeCloseTo(expected, 12)
      })
    }
    expect(prepared.standardization.mean).not.toEqual(fitStandardization(iris).mean)
    expect(prepared.validation.labels).toEqual(rawValidation.labels)
  })
})

describe("MLP", () => {
  it("keeps softmax and cross-entropy finite for large logits", () => {
    const logits = Float64Array.from([1000, 0, -1000])
    expect([...softmax(logits)]).toEqual([1, 0, 0])
    expect(crossEntropy(logits, 0)).toBeCloseTo(0, 12)
    expect(crossEntropy(logits, 1)).toBeCloseTo(1000, 9)
  })

  it("computes gradients that agree with central finite differences", () => {
    const random = mulberry32(2024)
    const model: Mlp = initMlp({ inputSize: 3, hiddenSize: 4, classCount: 3 }, random)
    // Random biases too, so that every term of the backward pass is exercised away from zero.
    for (const values of parameterArrays(model)) {
      for (let index = 0; index < values.length; index++) values[index] = uniform(random, -1, 1)
    }
    const features = Array.from({ length: 5 }, () => Float64Array.from({ length: 3 }, () => uniform(random, -2, 2)))
    const labels = [0, 1, 2, 1, 0]

    const { loss, gradients } = lossAndGradients(model, features, labels)
    expect(loss).toBeGreaterThan(0)

    const step = 1e-6
    const analytic = parameterArrays(gradients)
    let checked = 0
    parameterArrays(model).forEach((values, array) => {
      for (let index = 0; index < values.length; index++) {
        const original = values[index]
        values[index] = original + step
        const above = lossAndGradients(model, features, labels).loss
        values[index] = original - step
        const below = lossAndGradients(model, features, labels).loss
        values[index] = original

        const numeric = (above - below) / (2 * step)
        expect(Math.abs(analytic[array][index] - numeric)).toBeLessThan(1e-7 + 1e-5 * Math.abs(numeric))
        checked++
      }
    })
    // 3·4 + 4 hidden, 4·3 + 3 output parameters.
    expect(checked).toBe(31)
    expect(analytic.every((values) => values.some((value) => Math.abs(value) > 1e-4))).toBe(true)
  })
})

describe("training", () => {
  it("reports every epoch once, in order, and lowers the loss on both parts", () => {
    const epochs = collectEpochs(defaultTrainingConfig)
    expect(epochs.map((metrics) => metrics.epoch)).toEqual(
      Array.from({ length: defaultTrainingConfig.epochs }, (_, index) => index + 1)
    )

    const first = epochs[0]
    const last = epochs[epochs.length - 1]
    expect(last.trainLoss).toBeLessThan(first.trainLoss / 4)
    expect(last.validationLoss).toBeLessThan(first.validationLoss / 2)
    // Not only the end points: the mean loss of the last ten epochs is below that of the first ten.
    const meanLoss = (metrics: Array<EpochMetrics>) =>
      metrics.reduce((sum, { trainLoss }) => sum + trainLoss, 0) / metrics.length
    expect(meanLoss(epochs.slice(-10))).toBeLessThan(meanLoss(epochs.slice(0, 10)))
  })

  it("reaches at least 90 % validation accuracy with the default config", () => {
    const result = train(defaultTrainingConfig, () => {})
    const last = result.history[result.history.length - 1]
    expect(last.validationAccuracy).toBeGreaterThanOrEqual(0.9)
    expect(last.trainAccuracy).toBeGreaterThanOrEqual(0.9)
    expect(result.bestValidationAccuracy).toBe(Math.max(...result.history.map((m) => m.validationAccuracy)))
    expect(result.history[result.bestEpoch - 1].validationAccuracy).toBe(result.bestValidationAccuracy)
  })

  it("gives identical metrics for the same seed and different ones for another seed", () => {
    const config = { ...defaultTrainingConfig, epochs: 20 }
    const metrics = collectEpochs(config)
    expect(collectEpochs(config)).toEqual(metrics)
    expect(collectEpochs({ ...config, seed: config.seed + 1 })).not.toEqual(metrics)
  })

  it("changes with the hyperparameters it is given", () => {
    const config = { ...defaultTrainingConfig, epochs: 5 }
    const metrics = collectEpochs(config)
    expect(collectEpochs({ ...config, learning_rate: 0.1 })).not.toEqual(metrics)
    expect(collectEpochs({ ...config, momentum: 0 })).not.toEqual(metrics)
    expect(collectEpochs({ ...config, hidden_size: 4 })).not.toEqual(metrics)
    expect(collectEpochs({ ...config, batch_size: 120 })).not.toEqual(metrics)
  })
})

describe("flags", () => {
  it("converts the flags that are given and leaves the others out", () => {
    expect(parseTrainingFlags([])).toEqual({})
    expect(parseTrainingFlags(["--epochs", "50", "--learning_rate=0.1", "--momentum", "0"])).toEqual({
      epochs: 50,
      learning_rate: 0.1,
      momentum: 0
    })
  })

  it("refuses unknown flags and values out of range", () => {
    expect(() => parseTrainingFlags(["--epoch", "5"])).toThrow(FlagError)
    expect(() => parseTrainingFlags(["--epochs"])).toThrow(FlagError)
    expect(() => parseTrainingFlags(["--epochs", "2.5"])).toThrow("--epochs must be a whole number of at least 1")
    expect(() => parseTrainingFlags(["--learning_rate", "fast"])).toThrow(FlagError)
    expect(() => parseTrainingFlags(["--momentum", "1"])).toThrow(FlagError)
    expect(() => parseTrainingFlags(["--seed=-1"])).toThrow("--seed must be")
    expect(() => parseTrainingFlags(["--batch_size", ""])).toThrow(FlagError)
  })
})
