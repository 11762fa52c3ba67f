// PLACEHOLDER: replaced by the module that implements `vistyle start`.
import type { Command } from 'commander';

export function registerStartCommand(_program: Command): void {}
