// PLACEHOLDER: replaced by the module that implements `vistyle ask`.
import type { Command } from 'commander';

export function registerAskCommand(_program: Command): void {}
