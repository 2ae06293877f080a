// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Owner, operators and the pause switch of the Ludex contracts.
/// @notice The owner (a multisig in production) appoints operators and moves the
/// treasury; operators sign settlements and release players' table funds. Ownership
/// moves in two steps, so a mistyped address cannot capture the contract.
/// Pausing stops deposits, locks and settlement; withdrawals of unlocked funds stay
/// open, so no role can ever hold a player's free funds.
abstract contract LudexRoles {
    address public owner;
    address public pendingOwner;
    mapping(address account => bool) public isOperator;
    bool public paused;

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event OperatorSet(address indexed operator, bool enabled);
    event Paused(address indexed by);
    event Unpaused(address indexed by);

    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error NotOperator(address caller);
    error IsPaused();
    error ZeroAddress();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (!isOperator[msg.sender]) revert NotOperator(msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (paused) revert IsPaused();
        _;
    }

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress();
        owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    function setOperator(address operator, bool enabled) external onlyOwner {
        if (operator == address(0)) revert ZeroAddress();
        isOperator[operator] = enabled;
        emit OperatorSet(operator, enabled);
    }

    /// @notice The owner or any operator can pause (an emergency brake); only the
    /// owner can resume.
    function pause() external {
        if (msg.sender != owner && !isOperator[msg.sender]) revert NotOperator(msg.sender);
        paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyOwner {
        paused = false;
        emit Unpaused(msg.sender);
    }
}
