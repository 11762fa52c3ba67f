// PLACEHOLDER: replaced by the module that implements `vistyle model build`.
import type { Command } from 'commander';

export function registerModelBuildCommand(_model: Command): void {}
