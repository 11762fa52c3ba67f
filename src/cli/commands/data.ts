// PLACEHOLDER: replaced by the module that implements `vistyle data`.
import type { Command } from 'commander';

export function registerDataCommands(_program: Command): void {}
