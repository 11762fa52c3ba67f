// Snowflake ids like Discord's: milliseconds since the Discord epoch in the high bits, so that
// discord.js derives a true `createdTimestamp` from them (the adapter uses it for the 15-minute
// interaction-token deadline).
const DISCORD_EPOCH = 1_420_070_400_000n;

let increment = 0n;

export function snowflake(at: number = Date.now()): string {
  increment = (increment + 1n) & 0xfffn;
  return (((BigInt(at) - DISCORD_EPOCH) << 22n) | (1n << 17n) | increment).toString();
}

export function snowflakeTime(id: string): number {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH);
}
