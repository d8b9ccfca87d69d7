// ES module entry of multi-level-cache (`import { MultiLevelCache } from 'multi-level-cache'`).
// The CommonJS entry (index.js) is the implementation; this file re-exports it, so `import` and
// `require` in one process share one module instance, one native addon and one set of classes
// (`instanceof` works across both).
import cjs from './index.js'

export const { MultiLevelCache, codes, registerMetrics } = cjs
export default cjs
