// PLACEHOLDER: replaced by the module that implements `vistyle model pull`.
import type { Command } from 'commander';

export function registerModelPullCommand(_model: Command): void {}
