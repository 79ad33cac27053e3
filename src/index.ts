/**
 * wandb-effect: Weights & Biases experiment tracking for TypeScript, built on Effect.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Wandb from "./Wandb.js"

/**
 * @since 0.1.0
 */
export * from "./domain/Errors.js"

/**
 * @since 0.1.0
 */
export * as Settings from "./domain/Settings.js"
