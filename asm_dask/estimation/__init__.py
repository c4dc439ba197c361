"""How much ASM, and how sure: estimates of the ASM area from a probability sample of
labelled cells (:mod:`.area`), the design-based estimators they rest on (:mod:`.stratified`)
and the prediction-powered mean (:mod:`.prediction_powered`)."""
