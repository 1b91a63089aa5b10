package ledger

// FinishBatchSQL is the finish statement, for tests of its plan.
var FinishBatchSQL = finishBatchSQL
