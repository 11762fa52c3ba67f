// PLACEHOLDER: replaced by the module that implements `vistyle styles`.
import type { Command } from 'commander';

export function registerStylesCommand(_program: Command): void {}
