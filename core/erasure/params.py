"""A request's engine `params`, derived from the engine's own configs (core.spare.specs).

`SpareParams` / `EsdParams` are built from `SpareConfig` / `EsdConfig` field by field: every field becomes
optional (an omitted one takes the engine's default), and keeps the engine's type, bounds and description, so
each knob is defined once, in the engine. `ErasureParams` is their union, discriminated by `method` — the
request's top-level `method`, which the request body copies into its params before validating them (a caller
never has to repeat it). Unknown keys are refused, and a params object is only accepted when the engine's config
accepts it (cross-field rules such as top_k <= max_modules included).

Not settable per request: `device` (the worker's LETHE_DEVICE decides where a job runs).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from core.spare.specs import EsdConfig, SpareConfig

Method = Literal["spare", "esd"]
ENGINE_CONFIGS: dict[str, type[SpareConfig] | type[EsdConfig]] = {"spare": SpareConfig, "esd": EsdConfig}
# Engine fields a request may not set, and why: the deployment decides them.
NOT_PER_REQUEST = frozenset({"device"})


class _Params(BaseModel):
    """Shared behaviour of the derived params models."""

    # Strict: a number is a JSON number ("10" and true are not integers).
    model_config = ConfigDict(extra="forbid", strict=True)
    engine: ClassVar[type[SpareConfig] | type[EsdConfig]]
    check_engine: ClassVar[bool] = True

    def given(self) -> dict[str, Any]:
        """The fields the caller set, without `method` (stored as the request's own column)."""
        return self.model_dump(exclude_none=True, exclude={"method"})

    def engine_config(self, **overrides: Any) -> SpareConfig | EsdConfig:
        return self.engine(**{**self.given(), **overrides})

    @model_validator(mode="after")
    def _engine_accepts(self) -> _Params:
        if self.check_engine:
            try:
                self.engine_config()
            except ValidationError as exc:
                messages = [str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors()]
                raise ValueError("; ".join(messages)) from None
        return self


class _ParamsOut(_Params):
    """What a stored request was filed with: keys a later version no longer knows are kept, and the engine's
    cross-field rules (checked when it was filed) are not re-run on the way out."""

    model_config = ConfigDict(extra="allow", strict=False)
    check_engine: ClassVar[bool] = False


def _optional(info: FieldInfo) -> tuple[Any, Any]:
    """The engine field as an optional one: same type, bounds and description; default None."""
    field = Field(default=None, description=info.description)
    optional = info.annotation | None  # type: ignore[operator]
    if info.metadata:
        optional = Annotated[optional, *info.metadata]  # the engine's bounds
    return optional, field


def _derive(method: str, config: type[SpareConfig] | type[EsdConfig], *, name: str, out: bool) -> type[_Params]:
    fields: dict[str, Any] = {
        key: _optional(info) for key, info in config.model_fields.items()
        if key != "method" and key not in NOT_PER_REQUEST
    }
    doc = (f"Engine parameters of method `{method}` (core.spare.specs.{config.__name__}); omitted ones take the "
           "engine's defaults (docs/configuration.md lists them).")
    model = create_model(  # type: ignore[call-overload]
        name, __base__=_ParamsOut if out else _Params, __doc__=doc,
        method=(Literal[method], Field(default=method, description="The request's method (set from it).")),
        **fields,
    )
    model.engine = config
    return model


SpareParams = _derive("spare", SpareConfig, name="SpareParams", out=False)
EsdParams = _derive("esd", EsdConfig, name="EsdParams", out=False)
SpareParamsOut = _derive("spare", SpareConfig, name="SpareParamsOut", out=True)
EsdParamsOut = _derive("esd", EsdConfig, name="EsdParamsOut", out=True)
PARAMS: dict[str, type[_Params]] = {"spare": SpareParams, "esd": EsdParams}

ErasureParams = Annotated[SpareParams | EsdParams, Field(discriminator="method")]  # type: ignore[valid-type]
ErasureParamsOut = Annotated[SpareParamsOut | EsdParamsOut, Field(discriminator="method")]  # type: ignore[valid-type]


def with_method(data: Any, key: str = "params") -> Any:
    """A request body whose `params` carry the body's `method` (the union's discriminator)."""
    if not isinstance(data, dict):
        return data
    params = data.get(key)
    if params is None:
        params = {}
    if isinstance(params, dict):
        method = data.get("method", "spare")
        if "method" in params and params["method"] != method:
            return data  # the union reports the mismatch
        return {**data, key: {**params, "method": method}}
    return data


def validate_params(method: str, params: dict[str, Any]) -> _Params:
    """`params` for `method`, validated exactly as the API validates a request's params (the CLI's --params)."""
    if method not in PARAMS:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(PARAMS)}")
    return PARAMS[method].model_validate({**params, "method": method})
