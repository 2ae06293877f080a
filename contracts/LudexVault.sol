// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {LudexRoles} from "./LudexRoles.sol";

interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title Players' funds: deposits, withdrawals, funds locked at tables, the treasury.
/// @notice Every balance is per player and per token; `address(0)` is the native coin.
/// `available` funds belong to the player alone: only the player can withdraw them or
/// lock them for play. `locked` funds are at the tables: only a signed settlement
/// (LudexSettlement) moves them between players, and only an operator can release them
/// back to the same player's available balance. Rake accumulates in `treasury`, which
/// only the owner moves out.
abstract contract LudexVault is LudexRoles {
    address public constant NATIVE = address(0);

    mapping(address player => mapping(address token => uint256)) public available;
    mapping(address player => mapping(address token => uint256)) public locked;
    mapping(address token => uint256) public treasury;
    uint256 private _entered = 1;

    event Deposited(address indexed player, address indexed token, uint256 amount);
    event Withdrawn(address indexed player, address indexed token, uint256 amount);
    event Locked(address indexed player, address indexed token, uint256 amount);
    event Released(address indexed player, address indexed token, uint256 amount);
    event TreasuryMoved(address indexed token, address indexed to, uint256 amount);

    error ZeroAmount();
    error InsufficientAvailable(address player, address token, uint256 requested, uint256 held);
    error InsufficientLocked(address player, address token, uint256 requested, uint256 held);
    error InsufficientTreasury(address token, uint256 requested, uint256 held);
    error TransferFailed(address token, address to, uint256 amount);
    error NativeNotAccepted();
    error Reentrancy();

    modifier nonReentrant() {
        if (_entered != 1) revert Reentrancy();
        _entered = 2;
        _;
        _entered = 1;
    }

    /// @notice Deposit the native coin.
    function deposit() external payable whenNotPaused {
        if (msg.value == 0) revert ZeroAmount();
        available[msg.sender][NATIVE] += msg.value;
        emit Deposited(msg.sender, NATIVE, msg.value);
    }

    /// @notice Deposit an ERC-20 token (approve this contract first). What arrives is
    /// credited, so a token that takes a fee on transfer credits less than `amount`.
    function depositToken(address token, uint256 amount) external whenNotPaused nonReentrant {
        if (token == NATIVE) revert NativeNotAccepted();
        if (amount == 0) revert ZeroAmount();
        uint256 before = IERC20Minimal(token).balanceOf(address(this));
        _call(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)), msg.sender, amount);
        uint256 received = IERC20Minimal(token).balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
        available[msg.sender][token] += received;
        emit Deposited(msg.sender, token, received);
    }

    /// @notice Withdraw unlocked funds; open even while paused.
    function withdraw(address token, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 held = available[msg.sender][token];
        if (held < amount) revert InsufficientAvailable(msg.sender, token, amount, held);
        available[msg.sender][token] = held - amount;
        emit Withdrawn(msg.sender, token, amount);
        _send(token, msg.sender, amount);
    }

    /// @notice Lock available funds for play at the tables.
    function lock(address token, uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        uint256 held = available[msg.sender][token];
        if (held < amount) revert InsufficientAvailable(msg.sender, token, amount, held);
        available[msg.sender][token] = held - amount;
        locked[msg.sender][token] += amount;
        emit Locked(msg.sender, token, amount);
    }

    /// @notice An operator returns a player's table funds to the player's available
    /// balance (when the player leaves the tables). It moves nothing anywhere else.
    function release(address player, address token, uint256 amount) external onlyOperator {
        if (amount == 0) revert ZeroAmount();
        uint256 held = locked[player][token];
        if (held < amount) revert InsufficientLocked(player, token, amount, held);
        locked[player][token] = held - amount;
        available[player][token] += amount;
        emit Released(player, token, amount);
    }

    /// @notice The owner moves collected rake out of the treasury.
    function moveTreasury(address token, address to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 held = treasury[token];
        if (held < amount) revert InsufficientTreasury(token, amount, held);
        treasury[token] = held - amount;
        emit TreasuryMoved(token, to, amount);
        _send(token, to, amount);
    }

    function _send(address token, address to, uint256 amount) internal {
        if (token == NATIVE) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert TransferFailed(token, to, amount);
        } else {
            _call(token, abi.encodeCall(IERC20Minimal.transfer, (to, amount)), to, amount);
        }
    }

    /// @dev A token call that must succeed and return nothing or `true` (some tokens
    /// return no value).
    function _call(address token, bytes memory data, address to, uint256 amount) private {
        if (token.code.length == 0) revert TransferFailed(token, to, amount);
        (bool ok, bytes memory answer) = token.call(data);
        if (!ok || (answer.length != 0 && (answer.length != 32 || !abi.decode(answer, (bool))))) {
            revert TransferFailed(token, to, amount);
        }
    }
}
