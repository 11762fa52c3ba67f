// `vistyle model <pull|build>`
import type { Command } from 'commander';
import { registerModelBuildCommand } from './model-build.js';
import { registerModelPullCommand } from './model-pull.js';

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('fetch and build the model');
  registerModelPullCommand(model);
  registerModelBuildCommand(model);
}
