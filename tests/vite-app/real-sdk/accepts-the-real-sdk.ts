// The eyeson package's own types must be accepted where the guard wants the SDK.
import eyeson from "eyeson";
import { InactivityGuard } from "eyeson-guard";

export const guard = new InactivityGuard(eyeson, { timeoutMs: 60_000 });
