// PLACEHOLDER: replaced by the module that implements `vistyle tokenize`.
import type { Command } from 'commander';

export function registerTokenizeCommand(_program: Command): void {}
